"""Vectorized vs sequential clients (issue 2's workload), then scaling to 1,000 and 10,000 clients.

Workload: digits, 80/20 stratified split, 1,437 training samples over 100 IID clients (~14 each),
MLP 64-32-10, 1 local epoch, batch 8, SGD lr 0.05, all clients every round, 10 rounds.
Prints the median seconds per round excluding evaluation, the ratio, and final test accuracy.

    python benchmarks/bench_core.py [--threads 2] [--skip-10k]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedguard.config import parse_spec
from fedguard.core.runner import execute


def workload(trainer: str, dataset: dict, n_clients: int, rounds: int = 10) -> dict:
    return {
        "name": f"bench-{trainer}-{n_clients}",
        "rounds": rounds,
        "eval_every": rounds,
        "data": {
            "dataset": dataset,
            "test_fraction": 0.2,
            "validation_fraction": 0.0,
            "partition": "iid",
        },
        "model": {"name": "mlp", "hidden": [32]},
        "clients": {"n_clients": n_clients},
        "training": {
            "local_epochs": 1,
            "batch_size": 8,
            "learning_rate": 0.05,
            "trainer": trainer,
        },
    }


def measure(cfg: dict) -> tuple[float, float, float]:
    started = time.perf_counter()
    result = execute(parse_spec(cfg))
    wall = time.perf_counter() - started
    per_round = statistics.median(r["compute_seconds"] for r in result.records)
    return per_round, result.records[-1]["test_accuracy"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-10k", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads\n")

    execute(parse_spec(workload("vectorized", "digits", 100, rounds=1)))  # warm-up (torch.func)
    vec = measure(workload("vectorized", "digits", 100))
    seq = measure(workload("sequential", "digits", 100))
    print("digits, 100 clients, 10 rounds (median s/round excluding evaluation)")
    print(f"{'trainer':<12}{'s/round':>10}{'test acc':>10}{'wall s':>9}")
    for name, (sec, acc, wall) in (("vectorized", vec), ("sequential", seq)):
        print(f"{name:<12}{sec:>10.4f}{acc:>10.4f}{wall:>9.2f}")
    print(
        f"speed-up vectorized / sequential: {seq[0] / vec[0]:.1f}x; "
        f"accuracy difference {100 * (vec[1] - seq[1]):+.2f} points\n"
    )

    print("synthetic data of matching size (~14 samples/client, 64 features, 10 classes)")
    print(f"{'clients':>8}{'s/round':>10}{'s/round/1k clients':>20}{'test acc':>10}")
    sizes = [100, 1000] + ([] if args.skip_10k else [10000])
    for n in sizes:
        samples = int(n * 14 / 0.8)
        data = {
            "name": "synthetic",
            "n_samples": samples,
            "n_features": 64,
            "n_classes": 10,
            "n_informative": 16,
        }
        sec, acc, _ = measure(workload("vectorized", data, n, rounds=5))
        print(f"{n:>8}{sec:>10.4f}{1000 * sec / n:>20.4f}{acc:>10.4f}")


if __name__ == "__main__":
    main()
