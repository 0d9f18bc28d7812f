"""Torch threads and worker processes: one torch thread per process by default.

Two cores shared by a matrix's worker processes are oversubscribed as soon as each process keeps
torch's default of one thread per core (N workers × N threads); under contention a cell then costs
tens of times its single-thread CPU time. ``FEDGUARD_THREADS`` (or ``fedguard --threads``) changes
the number; spawned workers inherit it through the environment, and ``env.json`` records it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from fedguard.errors import UserError

THREADS_ENV = "FEDGUARD_THREADS"


def requested_threads(value: int | str | None = None) -> int:
    """The torch threads asked for: ``value``, else ``$FEDGUARD_THREADS``, else 1."""
    raw = value if value is not None else os.environ.get(THREADS_ENV) or 1
    try:
        threads = int(raw)
    except (TypeError, ValueError):
        threads = 0
    if threads < 1:
        raise UserError(f"--threads (or {THREADS_ENV}) must be a positive integer; got {raw!r}.")
    return threads


def configure_threads(value: int | str | None = None) -> int:
    """Set torch's intra-op threads for this process and the workers it spawns.

    A command that needs no torch (``calibrate``, ``keys``, …) should not pay for
    importing torch (over a second) just to set its threads: while torch is not imported yet,
    the number is set the moment torch finishes importing (:class:`_SetThreadsOnImport`), with
    ``torch.set_num_threads`` as before (``OMP_NUM_THREADS`` would not do: torch caps it at the
    number of cores).
    """
    threads = requested_threads(value)
    os.environ[THREADS_ENV] = str(threads)
    torch = sys.modules.get("torch")
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SetThreadsOnImport)]
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        sys.meta_path.insert(0, _SetThreadsOnImport(threads))
    return threads


class _SetThreadsOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``torch`` is first imported it lets the other finders locate
    it, then wraps that one loader so ``torch.set_num_threads`` runs right after torch's own
    initialisation, and removes itself."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "torch":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = importlib.util.find_spec("torch")
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load, threads = loader.exec_module, self.threads

        def exec_module(module: ModuleType) -> None:
            load(module)
            module.set_num_threads(threads)

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader
        return spec


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), the default number of workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)
