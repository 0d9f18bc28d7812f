"""Fault injection for run folders: crash at any write point, resume, compare with a clean run.

Every write of a run goes through :mod:`fedguard.storage.atomic` (atomic replace or append), which
calls ``atomic.fault_hook`` at each point: before a write, *inside* it (the hook writes a prefix of
the bytes and dies — a torn write), before the rename, after it. The harness counts the points of
an uninterrupted run, then crashes a fresh run at a chosen point, resumes it and returns what the
two runs committed, for the tests and ``benchmarks/faults/kills.py`` to compare.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from fedguard.config import RunSpec, parse_spec
from fedguard.launch import execute
from fedguard.privacy.budget import epsilon_of_ledger
from fedguard.storage import atomic
from fedguard.storage.run_dir import RunDirectory
from fedguard.storage.run_journal import ResumeRefused

#: DP (central Gaussian on a Poisson cohort) + client momentum + a poisoning attack + a privacy
#: attack whose artifacts are written mid-run + saved updates: every kind of state a round has.
CRASH_SPEC: dict[str, Any] = {
    "name": "crash",
    "seed": 0,
    "rounds": 3,
    "save_updates": True,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [8]},
    "clients": {
        "n_clients": 10,
        "sampling": "poisson",
        "sampling_rate": 0.6,
        "weighting": "uniform",
    },
    "training": {"batch_size": 32, "learning_rate": 0.1, "momentum": 0.5},
    "defense": {
        "client_transforms": [
            {"name": "momentum", "beta": 0.9},
            {"name": "clip", "clip_norm": 0.5},
        ],
        "server_transforms": [
            {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
        ],
    },
    "attack": {
        "n_malicious": 2,
        "model_attack": {"name": "sign_flip"},
        "privacy_attacks": [{"name": "analytic", "at_round": 1, "max_clients": 1}],
    },
}

#: Record fields that measure wall-clock time: they differ between any two runs.
TIMING = ("seconds",)


class Crash(BaseException):
    """The process dies here (a BaseException, like SIGKILL nothing in fedguard catches it)."""


@dataclass(frozen=True)
class WritePoint:
    index: int
    name: str
    file: str

    @property
    def tears(self) -> bool:
        """A point inside a write, where a crash leaves a prefix of the bytes behind."""
        return self.name.endswith(":write")


def crash_spec(**overrides: Any) -> RunSpec:
    return parse_spec({**CRASH_SPEC, **overrides})


@contextmanager
def hooked(hook: atomic.FaultHook | None) -> Iterator[None]:
    previous = atomic.fault_hook
    atomic.fault_hook = hook
    try:
        yield
    finally:
        atomic.fault_hook = previous


def write_points(spec: RunSpec, directory: Path) -> list[WritePoint]:
    """Every write point of an uninterrupted run of ``spec`` into ``directory``, in order."""
    seen: list[WritePoint] = []

    def count(name: str, path: Path, fh: IO[bytes] | None, data: bytes | None) -> None:
        seen.append(WritePoint(len(seen), name, str(path.relative_to(directory))))

    with hooked(count):
        execute(spec, directory)
    return seen


def crash_at(spec: RunSpec, directory: Path, point: int, tear: bool = True) -> bool:
    """Run ``spec`` into ``directory`` and die at write point ``point`` (inside the write, with
    half its bytes on disk, when ``tear``). Returns whether the crash happened."""
    calls = 0

    def die(name: str, path: Path, fh: IO[bytes] | None, data: bytes | None) -> None:
        nonlocal calls
        calls += 1
        if calls - 1 != point:
            return
        if tear and fh is not None and data:
            fh.write(data[: max(1, len(data) // 2)])
            fh.flush()
        raise Crash

    try:
        with hooked(die):
            execute(spec, directory)
    except Crash:
        return True
    return False


def resume(spec: RunSpec, directory: Path) -> str:
    """Resume an interrupted run: ``"resumed"``, ``"refused"`` (one-sentence refusal) or
    ``"complete"`` (it had finished before the crash point)."""
    run = RunDirectory(directory)
    if run.complete:
        return "complete"
    try:
        execute(spec, directory, resume=True)
    except ResumeRefused:
        return "refused"
    return "resumed"


def committed(directory: Path, delta: float = 1e-5) -> dict[str, Any]:
    """What a run folder says happened: records (timing removed), ledger, ε, attack results,
    the final model and the saved updates."""
    run = RunDirectory(directory)
    records = [
        {k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in run.rounds()
    ]
    ledger = run.ledger()
    summary = run.summary()
    updates = {f.name: run.load_updates(f) for f in run.update_files()}
    return {
        "records": records,
        "ledger": {k: ledger[k] for k in ("sampling", "delta", "rounds")},
        "epsilon": epsilon_of_ledger(ledger, delta),
        "privacy_attacks": summary.get("privacy_attacks"),
        "artifacts": sorted(p.name for p in (directory / "artifacts").glob("*")),
        "model": run.load_model()["params"],
        "updates": updates,
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields on which two committed runs differ (empty: identical)."""
    differ = [k for k in ("records", "ledger", "privacy_attacks", "artifacts") if a[k] != b[k]]
    if not math.isclose(a["epsilon"], b["epsilon"], rel_tol=0, abs_tol=0):
        differ.append("epsilon")
    if not torch.equal(a["model"], b["model"]):
        differ.append("model")
    if a["updates"].keys() != b["updates"].keys() or any(
        any(not torch.equal(a["updates"][f][k], b["updates"][f][k]) for k in a["updates"][f])
        for f in a["updates"]
    ):
        differ.append("updates")
    return differ
