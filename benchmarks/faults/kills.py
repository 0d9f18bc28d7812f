"""Kills at random points — inside every kind of write and by real SIGKILL — then resume.

Section of ``benchmarks/bench_faults.py``; also runnable alone:

    python benchmarks/faults/kills.py [--trials 200] [--sigkills 12] [--rounds 10000]

Prints: crash points tried (in-process, at a random write point of a DP + momentum + poisoning +
privacy-attack run, half of them torn mid-write), real SIGKILLs of a `fedguard run` process at
random instants, how many resumed to records, ledger, ε, attack results, model and updates
identical to an uninterrupted run (must be all) or were refused with one sentence; and the cost of
a checkpoint at round 10 vs round 10,000 (append-only journals: must be flat, ≤ 1.2×).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "core"))

from crash_harness import committed, crash_at, crash_spec, resume, same, write_points  # noqa: E402


def in_process_kills(trials: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    spec = crash_spec()
    with tempfile.TemporaryDirectory() as tmp:
        points = write_points(spec, Path(tmp) / "reference")
        expected = committed(Path(tmp) / "reference")
        counts = {"tried": 0, "identical": 0, "refused": 0, "different": 0, "torn": 0}
        for trial in range(trials):
            point = points[rng.randrange(len(points))]
            tear = point.tears and rng.random() < 0.5
            directory = Path(tmp) / f"t{trial}"
            if not crash_at(spec, directory, point.index, tear):
                raise RuntimeError(f"write point {point} was not reached")
            counts["tried"] += 1
            counts["torn"] += int(tear)
            outcome = resume(spec, directory)
            if outcome == "refused":
                counts["refused"] += 1
            elif same(expected, committed(directory)):
                counts["different"] += 1
                print(f"  DIFFERENT after a crash at {point} (torn={tear})")
            else:
                counts["identical"] += 1
        counts["write_points"] = len(points)
        return counts


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from crash_harness import crash_spec
from pathlib import Path
from fedguard.launch import execute
execute(crash_spec(rounds=6), Path({out!r}))
"""


def sigkills(trials: int, seed: int = 1) -> dict[str, int]:
    """Start a real process, SIGKILL it at a random instant, resume in this process."""
    rng = random.Random(seed)
    spec = crash_spec(rounds=6)
    counts = {"tried": 0, "identical": 0, "refused": 0, "different": 0, "finished_first": 0}
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        from fedguard.launch import execute

        execute(spec, reference)
        expected = committed(reference)
        started = time.perf_counter()
        probe = subprocess.run(
            [sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests/core"), out=tmp + "/p")],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=True,
        )
        assert probe.returncode == 0
        span = time.perf_counter() - started
        for trial in range(trials):
            directory = Path(tmp) / f"k{trial}"
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _CHILD.format(tests=str(ROOT / "tests/core"), out=str(directory)),
                ],
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            time.sleep(rng.uniform(0.3, 1.0) * span)
            child.send_signal(signal.SIGKILL)
            child.wait()
            counts["tried"] += 1
            if not directory.exists():
                outcome = "resumed"
                execute(spec, directory)
            else:
                outcome = resume(spec, directory)
            if outcome == "complete":
                counts["finished_first"] += 1
            if outcome == "refused":
                counts["refused"] += 1
            elif same(expected, committed(directory)):
                counts["different"] += 1
            else:
                counts["identical"] += 1
    return counts


def checkpoint_cost(rounds: int) -> dict[str, float]:
    """Seconds per commit near round 10 and near round ``rounds`` (journals keep growing)."""
    import torch

    from fedguard.storage.run_dir import RunDirectory
    from fedguard.storage.run_journal import RunJournal

    spec = crash_spec()
    record: dict[str, Any] = {
        "round": 0,
        "test_accuracy": 0.5,
        "weights": {str(i): 0.01 for i in range(100)},
        "flagged": [],
    }
    state = {"round": 0, "params": torch.zeros(2_410), "server_state": {}}
    ledger_round: dict[str, Any] = {
        "population": [
            {
                "type": "sampled",
                "rate": 0.6,
                "scheme": "poisson",
                "population": 10,
                "event": {"type": "gaussian", "noise_multiplier": 1.0, "sensitivity": 0.5},
            }
        ],
        "clients": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        journal = RunJournal.create(RunDirectory(Path(tmp) / "run"), spec, [], {})
        times: list[float] = []
        for t in range(1, rounds + 1):
            record["round"] = t
            state["round"] = t
            start = time.perf_counter()
            journal.commit(record, {"round": t, **ledger_round}, state)
            times.append(time.perf_counter() - start)
    early = statistics.median(times[:100])
    late = statistics.median(times[-100:])
    return {"round_10": early, f"round_{rounds}": late, "ratio": late / early}


def run(trials: int = 200, n_sigkills: int = 12, rounds: int = 10_000) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    kills = in_process_kills(trials)
    print(
        f"kills inside writes (in-process, {kills['write_points']} write points per run): "
        f"{kills['tried']} tried ({kills['torn']} torn mid-write) → {kills['identical']} resumed "
        f"identical, {kills['refused']} refused, {kills['different']} different "
        f"({time.perf_counter() - started:.0f} s)"
    )
    real = sigkills(n_sigkills) if n_sigkills else None
    if real is not None:
        print(
            f"SIGKILL of a running process at a random instant: {real['tried']} tried → "
            f"{real['identical']} identical after resume ({real['finished_first']} had finished), "
            f"{real['refused']} refused, {real['different']} different"
        )
    cost = checkpoint_cost(rounds)
    print(
        f"checkpoint (append record + ledger line, replace state.pt): "
        f"{cost['round_10'] * 1e3:.2f} ms at round 10, "
        f"{cost[f'round_{rounds}'] * 1e3:.2f} ms at round {rounds:,} → ratio {cost['ratio']:.2f} "
        "(goal ≤ 1.2; medians of 100 commits)"
    )
    return {"kills": kills, "sigkills": real, "checkpoint": cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sigkills", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=10_000)
    args = parser.parse_args()
    run(args.trials, args.sigkills, args.rounds)


if __name__ == "__main__":
    main()
