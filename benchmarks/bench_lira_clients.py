"""Client-level LiRA on ``configs/privacy_attacks.yaml``: every client the target in turn.

For each seed the config's run is trained and attacked once per client (the client's 26 samples
are the members, as many held-out samples the non-members); the script prints, per seed, the mean
AUC over the clients and its spread across clients, then the mean ± sd over seeds of those means
for each shadow count, and the paired per-seed difference between the first two shadow counts.
Chance is AUC 0.5. (The README's figures: seeds 0–4, 16 and 8 shadows.)

    python benchmarks/bench_lira_clients.py [--seeds 0 1 2 3 4] [--shadows 16 8] [--clients 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch
import yaml

from fedguard.config import parse_spec
from fedguard.launch import execute

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "privacy_attacks.yaml"


def mean_auc(seed: int, shadows: int, clients: int) -> tuple[float, float]:
    """Mean and sd over clients of the client-level LiRA AUC of one seed."""
    base = yaml.safe_load(CONFIG.read_text())
    aucs = []
    for client in range(clients):
        attack = {"name": "lira", "n_shadows": shadows, "target": "client"}
        cfg = {
            **base,
            "seed": seed,
            "attack": {"privacy_attacks": [{**attack, "target_client": client}]},
        }
        aucs.append(execute(parse_spec(cfg)).summary["privacy_attacks"]["lira"]["auc"])
    return statistics.mean(aucs), statistics.stdev(aucs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--shadows", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the per-client TPR-at-low-FPR caveats, 50 times a seed
    means: dict[int, list[float]] = {}
    for shadows in args.shadows:
        for seed in args.seeds:
            started = time.perf_counter()
            mean, sd = mean_auc(seed, shadows, args.clients)
            means.setdefault(shadows, []).append(mean)
            print(
                f"{shadows} shadows, seed {seed}: mean AUC over {args.clients} clients {mean:.3f} "
                f"(sd across clients {sd:.3f}); {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    print("\nmean AUC over clients, mean ± sd over seeds (chance 0.5):")
    for shadows, values in means.items():
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"  {shadows} shadows: {statistics.mean(values):.3f} ± {spread:.3f}")
    if len(args.shadows) >= 2:
        a, b = args.shadows[:2]
        diffs = [x - y for x, y in zip(means[a], means[b], strict=True)]
        print(
            f"  {a} − {b} shadows, paired by seed: {min(diffs):+.3f} to {max(diffs):+.3f} "
            f"(mean {statistics.mean(diffs):+.3f})"
        )


if __name__ == "__main__":
    main()
