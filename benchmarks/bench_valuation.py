"""Contribution valuation: cost and accuracy of every method against exact Shapley.

For n ∈ {5, 8, 10} and each method: utility evaluations, wall time (cold cache, ratio to exact),
relative L2 error against the exact value of the method's own target (Shapley, Banzhaf or
Beta(16, 1)), mean over repetitions at a budget of 8n distinct evaluations, and Spearman ρ against
exact Shapley. "(no CV)" rows switch off the FedAvg first-order control variate (the ablation).
Games: (1) a synthetic FL run (softmax regression on Gaussian blobs, MR utilities, with a
duplicate, a random-label client and a zero-update free-rider), (2) the digits FL game of the core
trainer (MR, validation loss) in the scenario of issue 8: one client an exact duplicate of another
honest client's data (``data.duplicate_clients``; 7 ← 0 for n = 8), one client with uniformly
random labels (``random_labels`` data attack) and one zero-update free-rider, FedAvg 20 rounds.
For n = 8 (the issue's scenario) also: the ranks of the random-label client and the free-rider
under exact MR Shapley, the duplicate's distance from its source against one 95% interval width
(permutation sampling at 32n), relative L2 error at 8n over 50 repetitions, the coverage of 95%
intervals at 32n, and the distance of OR/MR values from ``retrain`` values with the cost of each.

Run: ``PYTHONPATH=$PWD python benchmarks/bench_valuation.py [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from scipy import stats

from fedguard import registry
from fedguard.valuation.base import Scores
from fedguard.valuation.game import Game, RoundGame
from fedguard.valuation.kernels import (
    beta_size_distribution,
    exact_banzhaf,
    exact_shapley,
    semivalue_from_table,
)
from fedguard.valuation.reconstruction import MultiRoundReconstruction
from fedguard.valuation.synthetic import make_synthetic_run

GameFactory = Callable[[], RoundGame]


def methods(n: int, n_rounds: int) -> list[tuple[str, str, dict]]:
    budget = 8 * n
    return [
        ("exact", "shapley", {}),
        ("leave_one_out", "shapley", {}),
        ("permutation", "shapley", {"budget": budget}),
        ("permutation (no CV)", "shapley", {"budget": budget, "control_variate": False}),
        ("permutation (TMC 1%)", "shapley", {"budget": budget, "truncation_tolerance": 0.01}),
        ("stratified", "shapley", {"budget": budget}),
        ("stratified (no CV)", "shapley", {"budget": budget, "control_variate": False}),
        ("kernel_shap", "shapley", {"budget": budget}),
        ("kernel_shap (no CV)", "shapley", {"budget": budget, "control_variate": False}),
        ("banzhaf", "banzhaf", {"budget": budget}),
        ("beta_shapley", "beta", {"budget": budget}),
        ("gtg_shapley", "shapley", {"budget": budget * n_rounds}),
        ("fed_shapley", "shapley", {}),
        ("comfedsv", "shapley", {}),
        ("cosine", "proxy", {}),
        ("fedce", "proxy", {}),
    ]


def registry_name(label: str) -> str:
    return label.split(" ")[0]


def fit(game: Game | RoundGame, label: str, params: dict, seed: int) -> Scores:
    est = registry.create("valuation", registry_name(label), **params)
    return est.fit(game, torch.Generator().manual_seed(seed))  # type: ignore[no-any-return]


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def bench_game(title: str, factory: GameFactory, n: int, n_rounds: int, reps: int) -> None:
    warm = factory()
    table = warm.total().utilities(torch.arange(1 << n))  # (2**n,)
    targets = {
        "shapley": exact_shapley(table),
        "banzhaf": exact_banzhaf(table),
        "beta": semivalue_from_table(table, beta_size_distribution(n, 16.0, 1.0)),
    }
    exact_values = targets["shapley"]
    print(f"\n### {title}: n = {n}, {n_rounds} rounds (budget 8n = {8 * n})")
    header = (
        f"{'method':<22}{'evals':>8}{'unit':>17}{'time s':>9}{'× exact':>9}"
        f"{'rel L2':>9}{'Spearman':>10}"
    )
    print(header)
    print("-" * len(header))
    exact_time = None
    for label, target, params in methods(n, n_rounds):
        cold = factory()
        start = time.perf_counter()
        scores = fit(cold, label, params, 0)
        seconds = time.perf_counter() - start
        if label == "exact":
            exact_time = seconds
        deterministic = float(scores.std_errors.abs().max()) == 0.0 or target == "proxy"
        errors, rhos = [], []
        for rep in range(1 if deterministic else reps):
            s = scores if rep == 0 else fit(warm, label, params, rep)
            if target != "proxy":
                errors.append(rel_l2(s.values, targets[target]))
            rhos.append(float(stats.spearmanr(s.values.numpy(), exact_values.numpy()).statistic))
        err = f"{sum(errors) / len(errors):9.3f}" if errors else f"{'—':>9}"
        ratio = seconds / exact_time if exact_time else float("nan")
        print(
            f"{label:<22}{scores.n_evaluations:>8}{scores.evaluation_unit:>17}{seconds:9.3f}"
            f"{ratio:9.2f}{err}{sum(rhos) / len(rhos):10.3f}"
        )


def coverage(title: str, factory: GameFactory, n: int, reps: int) -> None:
    game = factory().total()
    exact_values = exact_shapley(game.utilities(torch.arange(1 << n)))
    print(f"\n### 95% interval coverage of exact Shapley at budget 32n ({title}, n = {n})")
    tol = 1e-9 * float(exact_values.abs().max())  # a point interval of an exact result covers
    for label in ("permutation", "stratified", "kernel_shap"):
        hits, exact_runs = 0, 0
        for rep in range(reps):
            s = fit(game, label, {"budget": 32 * n}, 1000 + rep)
            hits += int(((s.lower - tol <= exact_values) & (exact_values <= s.upper + tol)).sum())
            exact_runs += int(float(s.std_errors.abs().max()) == 0.0)
        note = f"; {exact_runs} runs enumerated every coalition (exact)" if exact_runs else ""
        print(f"{label:<14} {hits / (reps * n):.3f}  ({reps} repetitions × {n} clients{note})")


def synthetic_factory(n: int, n_rounds: int) -> GameFactory:
    run = make_synthetic_run(
        n_clients=n,
        n_rounds=n_rounds,
        duplicate_of_zero=n - 1,
        random_label_client=n - 3,
        free_rider=n - 2,
        seed=n,
    )
    return lambda: MultiRoundReconstruction(run.rounds, n, lambda p: run.evaluate(p, "loss"))


def digits_run(root: Path, n: int, n_rounds: int, save: bool = True) -> Path:
    """Train the scenario: of the clients the seed makes neither the random-label client nor the
    free-rider, the largest id gets an exact copy of the smallest's data (n = 8, seed 0: 7 ← 0)."""
    from fedguard.config import parse_spec
    from fedguard.launch import build_simulation, execute

    config = {
        "name": f"bench-contrib-{n}",
        "seed": 0,
        "rounds": n_rounds,
        "save_updates": save,
        "clients": {"n_clients": n},
        "model": "logreg",
        "attack": {
            "n_malicious": 1,
            "data_attack": {"name": "random_labels"},
            "free_riders": {"name": "zero", "count": 1},
        },
    }
    sim = build_simulation(parse_spec(config))  # roles depend on the seed and n only
    honest = [i for i in range(n) if i not in {*sim.malicious, *sim.free_riders}]
    spec = parse_spec({**config, "data": {"duplicate_clients": {honest[-1]: honest[0]}}})
    out = root / f"digits-{n}-{n_rounds}"
    execute(spec, out)
    return out


def digits_factory(path: Path) -> GameFactory:
    from fedguard.valuation.utilities import build_game, load_run

    run = load_run(path)

    def make() -> RoundGame:
        game = build_game(run, "reconstruct-multi-round", "loss")
        assert isinstance(game, RoundGame)
        return game

    return make


def scenario_checks(path: Path, n: int, reps: int) -> None:
    """Issue 8's checks on the digits scenario: exact MR time, ranks, duplicate vs its source."""
    from fedguard.valuation.utilities import load_run

    run = load_run(path)
    malicious, free = run.simulation.malicious, run.simulation.free_riders
    ((dup, src),) = run.spec.data.duplicate_clients.items()
    game = digits_factory(path)()
    start = time.perf_counter()
    exact = fit(game, "exact", {}, 0)
    seconds = time.perf_counter() - start
    ranks = exact.ranks()
    print(f"\n### issue 8 scenario checks (digits, n = {n}, MR, loss)")
    print(f"exact MR Shapley, cold cache: {seconds:.3f} s ({exact.n_evaluations} evaluations)")
    print(f"{'client':>7}{'role':>14}{'exact value':>13}{'rank':>6}")
    for i in range(n):
        role = (
            "random labels"
            if i in malicious
            else "free-rider"
            if i in free
            else f"dup of {src}"
            if i == dup
            else ""
        )
        print(f"{i:>7}{role:>14}{float(exact.values[i]):13.5f}{int(ranks[i]):6d}")
    last = sorted(int(ranks[i]) for i in (*malicious, *free))
    print(f"random-label + free-rider ranks {last} (last two = {[n - 1, n]}): {last == [n - 1, n]}")
    warm = game.total()
    widths = torch.stack(
        [
            (s.upper - s.lower)[src]
            for s in (fit(warm, "permutation", {"budget": 32 * n}, 2000 + r) for r in range(reps))
        ]
    )
    gap = abs(float(exact.values[dup] - exact.values[src]))
    width = float(widths.mean())
    print(
        f"duplicate {dup}: {float(exact.values[dup]):.5f}, client {src}: "
        f"{float(exact.values[src]):.5f}, |gap| = {gap:.5f}; client {src}'s 95% interval width "
        f"(permutation, 32n, mean of {reps}) = {width:.5f}; within one width: {gap <= width}"
    )


def retrain_vs_reconstruction(root: Path, n: int, n_rounds: int, path: Path | None = None) -> None:
    from fedguard.valuation.utilities import build_game, load_run

    path = path or digits_run(root, n, n_rounds)
    run = load_run(path)
    print(f"\n### retrain vs reconstruction (digits, n = {n}, {n_rounds} rounds, loss)")
    results = {}
    for builder in ("retrain", "reconstruct-one-round", "reconstruct-multi-round"):
        game = build_game(run, builder, "loss")
        start = time.perf_counter()
        scores = fit(game, "exact", {}, 0)
        results[builder] = (scores.values, time.perf_counter() - start)
    base_values, base_time = results["retrain"]
    print(f"{'utility':<26}{'exact time s':>13}{'× retrain':>11}{'rel L2 vs retrain':>19}{'ρ':>7}")
    for builder, (values, seconds) in results.items():
        rho = float(stats.spearmanr(values.numpy(), base_values.numpy()).statistic)
        print(
            f"{builder:<26}{seconds:13.3f}{seconds / base_time:11.4f}"
            f"{rel_l2(values, base_values):19.3f}{rho:7.3f}"
        )
    print("retrain values:", [round(v, 4) for v in base_values.tolist()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, n = 5 only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = (5,) if args.quick else (5, 8, 10)
    reps = 5 if args.quick else 20
    scenario_reps = 5 if args.quick else 50
    n_rounds = 20
    for n in sizes:
        bench_game("synthetic FL (MR, loss)", synthetic_factory(n, n_rounds), n, n_rounds, reps)
    coverage("synthetic FL n = 8", synthetic_factory(8, n_rounds), 8, 5 if args.quick else 30)
    root = Path(tempfile.mkdtemp(prefix="bench_valuation_"))
    try:
        for n in (*sizes, 8) if args.quick else sizes:
            started = time.perf_counter()
            path = digits_run(root, n, n_rounds)
            print(f"\n(digits run n = {n}: {time.perf_counter() - started:.1f} s of training)")
            scenario = n == 8
            bench_game(
                "digits FL (MR, loss)" + (", issue 8 scenario" if scenario else ""),
                digits_factory(path),
                n,
                n_rounds,
                scenario_reps if scenario else reps,
            )
            if scenario:
                scenario_checks(path, n, scenario_reps)
                coverage("digits issue 8 scenario", digits_factory(path), n, 2 * scenario_reps)
                retrain_vs_reconstruction(root, n, n_rounds, path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
