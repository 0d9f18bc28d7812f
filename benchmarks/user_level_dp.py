"""User-level DP across silos (issue 22 item 2): the figures of the README, reproducible.

Sections (run all, or some with ``--only NAME ...``):

- ``canaries``: the one-run lower bound of user-level canaries spread over silos
  (:mod:`fedguard.audit.user_canaries`) for a correct ULDP-AVG claiming ε = 2, the same claim with
  the noise switched off, and silos that bound only their own copy of a user; seeds 0, 1, 2.
- ``utility``: test accuracy of ``configs/uldp_avg.yaml`` (ULDP-AVG) against the same silos and
  recipe without DP, seeds 0, 1, 2, with the user-level ε.
- ``run_audit``: ``fedguard audit RUN --empirical`` on user-level runs (canary users through the
  run's own ULDP-AVG), lower bound and noise-off baseline next to the ledger's ε, seeds 0, 1, 2.
- ``sampling``: user-level vs example-level sampling at equal user-level ε (example rate q with
  1 − (1 − q)^k equal to the user rate, k the cross-silo record cap), with contribution caps
  within and across silos, seeds 0, 1, 2.

Run:  PYTHONPATH=$PWD python benchmarks/user_level_dp.py [--only canaries utility sampling run_audit]
"""

from __future__ import annotations

import argparse
import logging
import math
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


#: cross-silo caps k of the sampling comparison (of the 298 users, 6 hold more than 8 records
#: and 119 more than 4)
RECORD_CAPS = (8, 4)


def bench_sampling() -> None:
    """User- vs example-level sampling at equal user-level ε (same z, same user-level rate)."""
    from fedguard.config import load_spec
    from fedguard.core.user_level import example_level_participation
    from fedguard.launch import execute
    from fedguard.privacy.budget import ledger_report

    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "uldp_avg.yaml")
    base = dict(spec.defense.client_transforms[0].params)
    q_user = float(base["user_sampling_rate"])
    no_user_rate = {k: v for k, v in base.items() if k != "user_sampling_rate"}
    arms: dict[str, dict[str, object] | None] = {
        f"user-level sampling q = {q_user:g}, no cap": base,
        f"user-level sampling q = {q_user:g}, ≤ 8 per user, ≤ 2 per user per silo": {
            **base,
            "max_records_per_user": 8,
            "max_records_per_user_per_silo": 2,
        },
    }
    for k in RECORD_CAPS:
        # example-level rate whose user-level rate 1 − (1 − q)^k equals the user sampling rate
        q_example = -math.expm1(math.log1p(-q_user) / k)
        assert abs(example_level_participation(q_example, k) - q_user) < 1e-12
        arms[f"user-level sampling q = {q_user:g}, ≤ {k} records per user"] = {
            **base,
            "max_records_per_user": k,
        }
        arms[f"example-level sampling q = {q_example:.4f}, ≤ {k} records per user"] = {
            **no_user_rate,
            "max_records_per_user": k,
            "sampling": "example",
            "example_sampling_rate": q_example,
        }
    arms["no DP (same silos and recipe)"] = None
    print(
        f"\nuser- vs example-level sampling, configs/uldp_avg.yaml (z = {base['noise_multiplier']}, "
        f"C = {base['clip_norm']}, 30 rounds), test accuracy after the last round, mean ± std "
        f"(min–max) over seeds {', '.join(map(str, SEEDS))}; ε per user at δ = "
        f"{spec.privacy.delta:g}"
    )
    for name, params in arms.items():
        accuracies, epsilon = [], "∞ (no guarantee)"
        for seed in SEEDS:
            transforms = [] if params is None else [{"name": "uldp_avg", **params}]
            overrides = {"seed": seed, "defense.client_transforms": transforms}
            result = execute(spec.with_overrides(**overrides))
            accuracies.append(float(result.records[-1]["test_accuracy"]))
            if params is not None:
                report = ledger_report(result.ledger, spec.privacy.delta, ("rdp", "pld"))
                levels = report["levels"]["user"]["accountants"]
                epsilon = f"PLD {levels['pld']['epsilon']:.2f}, RDP {levels['rdp']['epsilon']:.2f}"
        print(f"  {name}: {_spread(accuracies)}; user-level ε = {epsilon}")


def bench_run_audit() -> None:
    """``fedguard audit RUN --empirical`` on user-level runs: canary users through the run's own
    ULDP-AVG; lower bound, noise-off baseline and the ledger's user-level ε."""
    import tempfile

    from fedguard.audit.user_empirical import user_level_empirical_audit
    from fedguard.config import load_spec, parse_spec
    from fedguard.launch import execute

    one_round = parse_spec(
        {
            "name": "uldp_claim_two",
            "rounds": 1,
            "data": {"dataset": {"name": "digits_users", "n_users": 60}, "partition": "iid"},
            "model": {"name": "mlp", "hidden": [64]},
            "clients": {"n_clients": 5, "weighting": "uniform", "sampling": "all"},
            "training": {"batch_size": 16, "learning_rate": 0.1, "local_epochs": 1},
            "defense": {
                "client_transforms": [
                    {"name": "uldp_avg", "noise_multiplier": 2.0, "clip_norm": 0.5}
                ]
            },
            "privacy": {"delta": 1e-5},
        }
    )
    config = load_spec(Path(__file__).resolve().parents[1] / "configs" / "uldp_avg.yaml")
    cases = {
        "z = 2, one round, 60 users over 5 silos, d = 4,810": one_round,
        "configs/uldp_avg.yaml (30 rounds, q = 0.3, d = 2,410)": config,
    }
    print(
        "\nfedguard audit RUN --empirical on user-level runs: 1,000 canary users in 3 of 5 silos,"
        "\n95 % confidence, δ = 1e-5; mean ± std (min–max) over seeds 0, 1, 2 (run and canaries)"
    )
    for name, spec in cases.items():
        lower, baseline, ceiling, upper = [], [], [], []
        for seed in SEEDS:
            with tempfile.TemporaryDirectory() as folder:
                run = Path(folder) / "run"
                execute(spec.with_overrides(seed=seed), run)
                result = user_level_empirical_audit(run, 1000)
            lower.append(float(result["epsilon_lower"]))
            baseline.append(float(result["baseline_noise_off"]))
            ceiling.append(float(result["ceiling"]))
            upper.append(float(result["epsilon_upper"]))
        print(
            f"  {name}: ledger ε = {max(upper):.2f}; lower bound {_spread(lower)}; noise "
            f"switched off {_spread(baseline)}; ceiling {max(ceiling):.2f}"
        )


SECTIONS: dict[str, Callable[[], None]] = {
    "run_audit": bench_run_audit,
    "canaries": bench_canaries,
    "utility": bench_utility,
    "sampling": bench_sampling,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for name in args.only:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
