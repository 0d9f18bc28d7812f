"""Torch threads and worker processes: one torch thread per process by default.

Two cores shared by a matrix's worker processes are oversubscribed as soon as each process keeps
torch's default of one thread per core (N workers × N threads); under contention a cell then costs
tens of times its single-thread CPU time. ``FEDGUARD_THREADS`` (or ``fedguard --threads``) changes
the number; spawned workers inherit it through the environment, and ``env.json`` records it.
"""

from __future__ import annotations

import os

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
    """Set torch's intra-op threads for this process and the workers it spawns."""
    import torch

    threads = requested_threads(value)
    os.environ[THREADS_ENV] = str(threads)
    torch.set_num_threads(threads)
    return threads


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), the default number of workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)
