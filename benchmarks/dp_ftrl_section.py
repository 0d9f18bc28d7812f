"""DP-FTRL section of ``bench_dp.py`` (issue 22, item 1).

- ``error``: root-mean-squared and worst error of the prefix sums (the model's noise under server
  SGD) per unit noise multiplier, *at equal privacy* — each strategy's error multiplied by its
  sensitivity under the b-min-separation schedule (k = ⌈T/b⌉ participations) — for independent
  noise (DP-FedAvg without amplification, C = I), tree aggregation (plain / Honaker, restarts
  every b rounds) and BandMF (b bands, total- and max-error objectives); ratio against
  independent noise, in the same process,
  with the seconds to build each strategy.
- ``utility``: final test accuracy of DP-FedAvg (Poisson, amplified), unamplified one-band BandMF
  (= DP-FedAvg over the schedule), DP-FTRL tree (Honaker), BandMF and amplified BandMF (half the
  groups, Poisson q = 1/2 inside them: the same expected cohort), each with the noise
  multiplier calibrated to the same ε (δ = 1e-5; the ledger's PLD ε is printed next to it),
  mean ± sample sd over 3 seeds, and seconds per run; no-DP baseline alongside.

Run:  PYTHONPATH=$PWD python benchmarks/dp_ftrl_section.py [--only error utility] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize
from text_table import print_table  # sibling module: the scripts run from benchmarks/

from fedguard.defenses.dp_ftrl.banded_factorization import bandmf_strategy
from fedguard.defenses.dp_ftrl.sensitivity import (
    cyclic_patterns,
    max_participations,
    sensitivity_squared,
)
from fedguard.defenses.dp_ftrl.tree_factorization import prefix_workload, tree_factorization
from fedguard.privacy.accountants.analytic import gaussian_epsilon

DELTA = 1e-5


def _strategies(rounds: int, separation: int) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """``(label, decoder B, strategy C, build seconds)`` of each compared strategy."""
    out = [("independent (C = I)", prefix_workload(rounds), np.eye(rounds), 0.0)]
    for estimator in ("plain", "honaker"):
        start = time.perf_counter()
        f = tree_factorization(rounds, separation, estimator)
        out.append((f"tree {estimator}", f.decoder, f.strategy, time.perf_counter() - start))
    for objective in ("total", "max"):
        start = time.perf_counter()
        c = bandmf_strategy(rounds, separation, objective=objective)
        seconds = time.perf_counter() - start
        decoder = prefix_workload(rounds) @ np.linalg.inv(c)
        out.append((f"bandmf ({separation} bands, {objective})", decoder, c, seconds))
    return out


def bench_error(quick: bool = False) -> None:
    settings = [(64, 4), (64, 16)] if quick else [(64, 4), (64, 16), (256, 8), (256, 32)]
    rows = []
    for rounds, separation in settings:
        patterns = cyclic_patterns(rounds, separation)
        base_rmse = math.nan
        for label, decoder, strategy, seconds in _strategies(rounds, separation):
            s = math.sqrt(sensitivity_squared(strategy, patterns))
            rmse = s * math.sqrt(float(np.sum(decoder**2)) / rounds)
            worst = s * math.sqrt(float(np.max(np.sum(decoder**2, axis=1))))
            base_rmse = rmse if math.isnan(base_rmse) else base_rmse
            rows.append(
                (
                    str(rounds),
                    str(separation),
                    str(max_participations(rounds, separation)),
                    label,
                    f"{s:.3f}",
                    f"{rmse:.2f}",
                    f"{worst:.2f}",
                    f"{rmse / base_rmse:.3f}",
                    f"{seconds:.2f}",
                )
            )
    print_table(
        "DP-FTRL: error of the noisy prefix sums at equal privacy (b-min-separation, k = ⌈T/b⌉ "
        "participations; error = sensitivity × decoder norm, per unit noise multiplier and clip "
        "norm; deterministic, no seeds; ratio vs independent noise)",
        ("T", "b", "k", "strategy", "sens", "RMSE", "max err", "x indep", "build s"),
        rows,
    )


def _mu_for(epsilon: float) -> float:
    """μ of the Gaussian mechanism with ε(δ) = ``epsilon`` (exact, Balle & Wang 2018)."""
    return float(optimize.brentq(lambda m: gaussian_epsilon(m, DELTA) - epsilon, 1e-6, 100.0))


def utility_specs(epsilon: float, rounds: int, separation: int, n_clients: int) -> dict[str, Any]:
    """Server transforms and client schedules compared at ``epsilon`` (noise calibrated here)."""
    from fedguard.privacy.calibrate import calibrate_clipped_sum_noise

    mu = _mu_for(epsilon)
    k = max_participations(rounds, separation)
    patterns = cyclic_patterns(rounds, separation)
    tree = tree_factorization(rounds, separation, "honaker")
    tree_s = math.sqrt(sensitivity_squared(tree.strategy, patterns))
    separated = {"sampling": "min_separation", "min_separation": separation}
    poisson_z = calibrate_clipped_sum_noise(
        epsilon, DELTA, rounds, 1.0 / separation, accountant="pld"
    )
    half = separation // 2  # half the groups, each client there with q = 1/2: same cohort
    amplified_z = calibrate_clipped_sum_noise(
        epsilon, DELTA, max_participations(rounds, half), 0.5, accountant="pld"
    )
    return {
        "no DP": (None, separated),
        "DP-FedAvg Poisson q=1/b": (
            {"name": "central_gaussian", "noise_multiplier": poisson_z},
            {"sampling": "poisson", "sampling_rate": 1.0 / separation},
        ),
        "BandMF 1 band (DP-FedAvg, min-sep)": (
            {"name": "bandmf", "bands": 1, "noise_multiplier": math.sqrt(k) / mu},
            separated,
        ),
        "DP-FTRL tree (Honaker)": (
            {"name": "dp_ftrl_tree", "estimator": "honaker", "noise_multiplier": tree_s / mu},
            separated,
        ),
        f"BandMF {separation} bands": (
            {"name": "bandmf", "bands": separation, "noise_multiplier": math.sqrt(k) / mu},
            separated,
        ),
        f"BandMF amplified ({half} groups, q=1/2, {half} bands)": (
            {"name": "bandmf", "bands": half, "noise_multiplier": amplified_z},
            {"sampling": "min_separation", "min_separation": half, "sampling_rate": 0.5},
        ),
    }


def bench_utility(quick: bool = False) -> None:
    from fedguard.config import parse_spec
    from fedguard.launch import execute
    from fedguard.privacy.budget import epsilon_of_ledger

    epsilon, rounds, separation, n_clients, clip = 2.0, 60, 10, 300, 0.5
    seeds = [0, 1, 2]
    rows = []
    for label, (server, clients) in utility_specs(epsilon, rounds, separation, n_clients).items():
        accuracies, seconds, eps = [], [], math.nan
        for seed in seeds[: 1 if quick else 3]:
            defense: dict[str, Any] = {"client_transforms": [{"name": "clip", "clip_norm": clip}]}
            if server is not None:
                defense["server_transforms"] = [{**server, "clip_norm": clip}]
            spec = parse_spec(
                {
                    "name": "dp-ftrl-utility",
                    "seed": seed,
                    "rounds": rounds,
                    "eval_every": rounds,
                    "data": {
                        "dataset": {
                            "name": "synthetic",
                            "n_samples": 24000,
                            "class_separation": 1.5,
                        },
                        "partition": "iid",
                    },
                    "model": {"name": "mlp", "hidden": [16]},
                    "clients": {"n_clients": n_clients, "weighting": "uniform", **clients},
                    "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
                    "server": {"optimizer": "sgd", "learning_rate": 1.0},
                    "defense": defense,
                }
            )
            start = time.perf_counter()
            result = execute(spec)
            seconds.append(time.perf_counter() - start)
            accuracies.append(float(result.records[-1]["test_accuracy"]))
            if server is not None:
                eps = float(epsilon_of_ledger(result.ledger, DELTA, "pld"))
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else math.nan
        rows.append(
            (
                label,
                "-" if math.isnan(eps) else f"{eps:.2f}",
                f"{server['noise_multiplier']:.3f}" if server else "-",
                f"{statistics.mean(accuracies):.3f} ± {spread:.3f}",
                f"{statistics.mean(seconds):.1f}",
            )
        )
    print_table(
        f"DP-FTRL vs DP-FedAvg at equal ε = {epsilon} (δ = 1e-5; synthetic 24,000 samples, "
        f"{n_clients} clients, {rounds} rounds, min separation b = {separation}, clip {clip}; "
        f"test accuracy mean ± sd over {len(seeds[: 1 if quick else 3])} seeds; ε = ledger PLD)",
        ("mechanism", "ε", "z", "accuracy", "s/run"),
        rows,
    )


SECTIONS = {"error": bench_error, "utility": bench_utility}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer settings, one seed")
    args = parser.parse_args(argv)
    for name in args.only:
        SECTIONS[name](args.quick)


if __name__ == "__main__":
    main()
