"""Empirical privacy audit: estimator timings, validity over seeds, and the audit's cost.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/bench_audit.py [--seeds 50] [--canaries 1000]

Three tables:

1. Estimator timings on fixed inputs, as multiples of one one-run p-value evaluation (baseline,
   measured in the same process).
2. The one-run lower bound on a Gaussian release of known ε over many seeds: the fraction of
   seeds where the bound stays at or below the true ε (must be ≥ the confidence level), and the
   fraction where a broken mechanism (noise off, ledger claiming σ = 2) is caught.
3. The cost of ``empirical_audit`` (one canary-variant training run) relative to the run it audits.
4. ``empirical_audit`` of federated runs under a stand-in DP-FedAvg (clip + central Gaussian noise
   with a fixed denominator; the suite's own DP mechanisms plug in the same way) over seeds:
   the rate at which the bound stays below the accountants' ε, and at which a broken mechanism
   (noise off, ledger claiming σ = 2) is caught.
5. Record-level DP-SGD audited with mislabelled sample canaries (``sample_canary_audit``) through
   Opacus and through fedguard's own DP-SGD, and white-box Dirac gradient canaries
   (``gradient_canary_audit``, Opacus), over seeds: bound, accountant ε, ratio, ceiling and
   time per audit relative to the Opacus path (baseline, same process).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedguard.api import ClientTransform, ServerTransform, TransformContext, TransformOutput
from fedguard.audit import (
    canary_cosines,
    canary_directions,
    canary_epsilon_estimate,
    canary_inclusion,
    clopper_pearson_epsilon,
    gaussian_pair_epsilon,
    gaussian_sum_release,
    gdp_epsilon,
    gdp_threshold_audit,
    max_certifiable_epsilon,
    one_run_audit,
    one_run_epsilon,
    one_run_p_value,
    threshold_audit,
)
from fedguard.rng import torch_generator

DELTA = 1e-5


def best_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Smallest wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def estimator_table() -> None:
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included * 2.0 + rng.normal(size=1000)
    with_c, without_c = rng.normal(2, 1, 1000), rng.normal(0, 1, 1000)
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "one_run_p_value (baseline) m=1000 r=400 v=380",
            lambda: one_run_p_value(1000, 400, 380, 2.0, DELTA),
        ),
        (
            "one_run_epsilon m=1000 r=400 v=380",
            lambda: one_run_epsilon(1000, 400, 380, delta=DELTA),
        ),
        ("max_certifiable_epsilon m=1000", lambda: max_certifiable_epsilon(1000, delta=DELTA)),
        (
            "one_run_audit m=1000 (16-point grid)",
            lambda: one_run_audit(scores, included, delta=DELTA),
        ),
        ("clopper_pearson_epsilon (counts)", lambda: clopper_pearson_epsilon(990, 1000, 5, 1000)),
        (
            "threshold_audit 1000+1000 scores, all thresholds",
            lambda: threshold_audit(with_c, without_c),
        ),
        ("gdp_threshold_audit 1000+1000 scores", lambda: gdp_threshold_audit(with_c, without_c)),
        ("gdp_epsilon mu=1", lambda: gdp_epsilon(1.0, DELTA)),
        (
            "gaussian_pair_epsilon (unequal variances)",
            lambda: gaussian_pair_epsilon(DELTA, 0.5, 1.1, 0.0, 1.0),
        ),
        (
            "canary_epsilon_estimate 500 cosines",
            lambda: canary_epsilon_estimate(scores[:500] / 100, delta=DELTA, dimension=10000),
        ),
    ]
    baseline = best_time(cases[0][1], repeats=20)
    print("\n1. Estimator timings (best of 5)")
    print(f"{'estimator':<52} {'ms':>9} {'x baseline':>11}")
    for name, fn in cases:
        t = best_time(fn, repeats=20 if "baseline" in name else 5)
        print(f"{name:<52} {1e3 * t:>9.3f} {t / baseline:>11.1f}")


def validity_table(n_seeds: int, n_canaries: int, dimension: int) -> None:
    print(
        f"\n2. One-run bound on a Gaussian release, {n_seeds} seeds, m={n_canaries}, d={dimension}"
    )
    print(
        f"{'mechanism':<30} {'claimed eps':>11} {'mean LB':>8} {'max LB':>8} "
        f"{'LB<=claim':>10} {'ceiling':>8} {'s/seed':>7}"
    )
    settings = [
        ("Gaussian z=1 (correct)", 1.0, 1.0),
        ("Gaussian z=2 (correct)", 2.0, 2.0),
        ("noise off, ledger z=2", 0.0, 2.0),
    ]
    for name, actual, claimed in settings:
        claim = gdp_epsilon(1.0 / claimed, DELTA)
        bounds, ceiling = [], 0.0
        start = time.perf_counter()
        for seed in range(n_seeds):
            dirs = canary_directions(n_canaries, dimension, seed)
            included = canary_inclusion(n_canaries, seed)
            release = gaussian_sum_release(
                dirs,
                included,
                clip_norm=1.0,
                noise_multiplier=actual,
                generator=torch_generator(seed, 0, -1, "bench.noise"),
            )
            result = one_run_audit(
                canary_cosines(release, dirs).numpy(), included.numpy(), delta=DELTA
            )
            bounds.append(result.epsilon)
            ceiling = result.details["ceiling"]
        per_seed = (time.perf_counter() - start) / n_seeds
        below = float(np.mean(np.asarray(bounds) <= claim))
        print(
            f"{name:<30} {claim:>11.3f} {statistics.mean(bounds):>8.3f} {max(bounds):>8.3f} "
            f"{below:>10.2%} {ceiling:>8.3f} {per_seed:>7.3f}"
        )
    print("   (correct mechanisms: LB<=claim must be >= 95%; broken: LB<=claim is the miss rate)")


def cost_table(n_canaries: int) -> None:
    from fedguard.audit.empirical import empirical_audit
    from fedguard.config import parse_spec
    from fedguard.launch import execute

    print(f"\n3. Cost of empirical_audit (m={n_canaries}) relative to the audited run")
    print(
        f"{'config':<40} {'run s':>6} {'audit s':>8} {'(train s)':>9} {'ratio':>6} "
        f"{'LB':>5} {'ceiling':>8}"
    )
    configs: dict[str, dict[str, Any]] = {
        "digits MLP[32], 20 clients, 10 rounds": {"rounds": 10},
        "digits MLP[128], 20 clients, 5 rounds": {
            "rounds": 5,
            "model": {"name": "mlp", "hidden": [128]},
        },
    }
    warm_up = parse_spec({"name": "warm-up", "rounds": 1})
    execute(warm_up)  # the first run in a process pays torch.func's one-off set-up
    for label, overrides in configs.items():
        spec = parse_spec(
            {
                "name": "bench-audit",
                "seed": 0,
                "clients": {"n_clients": 20, "weighting": "uniform"},
                "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
                **overrides,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            execute(spec, out=run_dir)
            result = empirical_audit(run_dir, n_canaries)
        run_s, audit_s = result["audited_run_seconds"], result["audit_seconds"]
        print(
            f"{label:<42} {run_s:>6.2f} {audit_s:>8.2f} {result['training_seconds']:>9.2f} "
            f"{result['cost_ratio']:>6.2f} {result['epsilon_lower']:>5.2f} "
            f"{result['ceiling']:>8.3f}"
        )
    print("   (train s: the canary variant's training, within audit s; no DP mechanism on these")
    print("    runs, so the bound is limited only by the canary count)")


@dataclass(frozen=True)
class StandInClip(ClientTransform):
    """Clip each client update to ``clip_norm`` (stand-in for the suite's DP client transform)."""

    clip_norm: float = 0.5

    def __call__(self, updates: torch.Tensor, ctx: TransformContext) -> TransformOutput:
        norms = torch.linalg.vector_norm(updates, dim=1, keepdim=True)  # (n, 1)
        scale = torch.clamp(self.clip_norm / norms.clamp_min(1e-12), max=1.0)
        return TransformOutput(updates * scale)


@dataclass(frozen=True)
class StandInCentralNoise(ServerTransform):
    """``(Σ clipped + N(0, (z·C)² I)) / W`` from the uniform mean; records a Gaussian event."""

    clip_norm: float = 0.5
    noise_multiplier: float = 2.0
    claimed_noise_multiplier: float = 2.0

    def __call__(self, aggregate: torch.Tensor, ctx: TransformContext) -> TransformOutput:
        total = aggregate * len(ctx.client_ids)  # (d,) the sum of the clipped updates
        noise = torch.randn(aggregate.shape, generator=ctx.round.generator("bench_noise"))
        released = total + self.noise_multiplier * self.clip_norm * noise
        from fedguard.privacy.events import event_from_dict

        claimed = {
            "type": "gaussian",
            "noise_multiplier": self.claimed_noise_multiplier,
            "sensitivity": self.clip_norm,
        }
        event = event_from_dict(claimed)
        return TransformOutput(released / ctx.sampling["expected_cohort"], events=(event,))


def federated_table(n_seeds: int, n_canaries: int) -> None:
    from fedguard.audit.empirical import empirical_audit
    from fedguard.components import build_components
    from fedguard.config import parse_spec

    print(
        f"\n4. empirical_audit under a stand-in DP-FedAvg (1 round, 20 clients, MLP[128]), "
        f"{n_seeds} seeds, m={n_canaries}"
    )
    print(
        f"{'mechanism':<28} {'upper eps':>9} {'mean LB':>8} {'max LB':>7} {'LB<=upper':>10} "
        f"{'ceiling':>8} {'s/audit':>8}"
    )
    for name, actual in (("DP-FedAvg z=2 (correct)", 2.0), ("noise off, ledger z=2", 0.0)):
        bounds, uppers, ceiling = [], [], 0.0
        start = time.perf_counter()
        for seed in range(n_seeds):
            spec = parse_spec(
                {
                    "name": "bench-fl",
                    "seed": seed,
                    "rounds": 1,
                    "model": {"name": "mlp", "hidden": [128]},
                    "clients": {"n_clients": 20, "weighting": "uniform"},
                    "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
                }
            )
            components = replace(
                build_components(spec),
                client_transforms=(StandInClip(0.5),),
                server_transforms=(StandInCentralNoise(0.5, actual, 2.0),),
            )
            result = empirical_audit(spec, n_canaries, components=components, accountants=("pld",))
            bounds.append(result["epsilon_lower"])
            uppers.append(result["epsilon_upper"])
            ceiling = result["ceiling"]
        per_audit = (time.perf_counter() - start) / n_seeds
        below = float(np.mean(np.asarray(bounds) <= np.asarray(uppers)))
        print(
            f"{name:<28} {statistics.mean(uppers):>9.3f} {statistics.mean(bounds):>8.3f} "
            f"{max(bounds):>7.3f} {below:>10.2%} {ceiling:>8.3f} {per_audit:>8.2f}"
        )
    print("   (correct: LB<=upper must be >= 95%; broken: LB<=upper is the miss rate)")


def sample_canary_table(n_seeds: int) -> None:
    from fedguard.audit import (
        SampleCanaryConfig,
        gradient_canary_audit,
        sample_canary_audit,
    )

    print(
        f"\n5. sample_canary_audit (digits MLP[256], 500 samples, 200 mislabelled canaries, "
        f"30 epochs, B=32, C=10), {n_seeds} seeds, 95%, delta={DELTA}"
    )
    print(
        f"{'trainer, canaries, mechanism':<42} {'upper eps':>9} {'mean LB':>8} {'max LB':>7} "
        f"{'LB/upper':>9} {'ceiling':>8} {'test acc':>9} {'s/audit':>8} {'x opacus':>9}"
    )
    baseline = 0.0
    runs = (
        ("opacus", "mislabelled", sample_canary_audit),
        ("fedguard", "mislabelled", sample_canary_audit),
        ("opacus", "dirac", gradient_canary_audit),
    )
    for trainer, canaries, audit in runs:
        for name, actual in (("z=1", None), ("noise off, ledger z=1", 0.0)):
            cfg = SampleCanaryConfig(trainer=trainer, actual_noise_multiplier=actual)  # type: ignore[arg-type]
            start = time.perf_counter()
            audits = [audit(cfg, seed=seed) for seed in range(n_seeds)]
            per_audit = (time.perf_counter() - start) / n_seeds
            if baseline == 0.0:
                baseline = per_audit
            bounds = [a.epsilon_lower for a in audits]
            uppers = [a.epsilon_upper_opacus for a in audits]
            label = f"{trainer} {canaries} {name}"
            print(
                f"{label:<42} {statistics.mean(uppers):>9.3f} "
                f"{statistics.mean(bounds):>8.3f} {max(bounds):>7.3f} "
                f"{statistics.mean(a.ratio for a in audits):>9.3f} {audits[0].ceiling:>8.3f} "
                f"{statistics.mean(a.test_accuracy for a in audits):>9.3f} {per_audit:>8.2f} "
                f"{per_audit / baseline:>9.2f}"
            )
    print("   (the ceiling is below the claimed eps: 200 canaries can expose a broken mechanism")
    print("    against a correct one, not refute eps ~ 9 itself)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--dimension", type=int, default=2000)
    parser.add_argument("--fl-seeds", type=int, default=10)
    parser.add_argument("--fl-canaries", type=int, default=500)
    parser.add_argument("--sample-seeds", type=int, default=5)
    parser.add_argument("--only-sample-canaries", action="store_true", help="run table 5 alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.only_sample_canaries:
        estimator_table()
        validity_table(args.seeds, args.canaries, args.dimension)
        cost_table(args.canaries)
        federated_table(args.fl_seeds, args.fl_canaries)
    sample_canary_table(args.sample_seeds)


if __name__ == "__main__":
    main()
