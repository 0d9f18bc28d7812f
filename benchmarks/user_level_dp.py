"""User-level DP across silos (issue 22 item 2): the figures of the README, reproducible.

Sections (run all, or some with ``--only NAME ...``):

- ``canaries``: the one-run lower bound of user-level canaries spread over silos
  (:mod:`fedguard.audit.user_canaries`) for a correct ULDP-AVG claiming ε = 2, the same claim with
  the noise switched off, and silos that bound only their own copy of a user; seeds 0, 1, 2.
- ``utility``: test accuracy of ``configs/uldp_avg.yaml`` (ULDP-AVG) against the same silos and
  recipe without DP, seeds 0, 1, 2, with the user-level ε.

Run:  PYTHONPATH=$PWD python benchmarks/user_level_dp.py [--only canaries utility]
"""

from __future__ import annotations

import argparse
import logging
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

SEEDS = (0, 1, 2)
#: ε(δ = 1e-5) of one unsampled Gaussian release with this multiplier is 2.00
CLAIM_TWO = 1.9938


def _spread(values: Sequence[float]) -> str:
    return (
        f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} "
        f"({min(values):.3f}–{max(values):.3f})"
    )


def bench_canaries() -> None:
    from fedguard.audit.user_canaries import UserCanaryDesign, user_canary_audit

    cases: dict[str, dict[str, object]] = {
        "correct (5 silos per canary)": {"n_silos": 5, "silos_per_canary": 5},
        "noise switched off (3 silos per canary)": {"actual_noise_multiplier": 0.0},
        "no cross-silo weights (5 silos per canary)": {
            "n_silos": 5,
            "silos_per_canary": 5,
            "cross_silo_weights": False,
        },
    }
    print("\nuser-level canaries: 1,000 canary users, d = 4,000, one round, claimed ε = 2.00")
    print("(z = 1.994), 95 % confidence, δ = 1e-5; lower bound mean ± std (min–max), seeds 0, 1, 2")
    for name, extra in cases.items():
        lower, caught = [], 0
        for seed in SEEDS:
            design = UserCanaryDesign(noise_multiplier=CLAIM_TWO, seed=seed, **extra)  # type: ignore[arg-type]
            result = user_canary_audit(design)
            lower.append(float(result["epsilon_lower"]))
            caught += bool(result["lower_exceeds_upper"])
        print(f"  {name}: {_spread(lower)}; above the claim in {caught}/{len(SEEDS)} seeds")


def bench_utility() -> None:
    from fedguard.config import load_spec
    from fedguard.launch import execute
    from fedguard.privacy.budget import ledger_report

    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "uldp_avg.yaml")
    rows = {"uldp_avg": spec, "no DP (same silos and recipe)": None}
    print("\nconfigs/uldp_avg.yaml, test accuracy after the last round, seeds 0, 1, 2")
    for name, base in rows.items():
        accuracies, epsilon = [], "∞ (no guarantee)"
        for seed in SEEDS:
            overrides: dict[str, object] = {"seed": seed}
            if base is None:
                overrides["defense.client_transforms"] = []
            result = execute(spec.with_overrides(**overrides))
            accuracies.append(float(result.records[-1]["test_accuracy"]))
            if base is not None:
                report = ledger_report(result.ledger, spec.privacy.delta, ("rdp", "pld"))
                levels = report["levels"]["user"]["accountants"]
                epsilon = f"PLD {levels['pld']['epsilon']:.2f}, RDP {levels['rdp']['epsilon']:.2f}"
        print(f"  {name}: {_spread(accuracies)}; user-level ε = {epsilon}")


SECTIONS: dict[str, Callable[[], None]] = {"canaries": bench_canaries, "utility": bench_utility}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for name in args.only:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
