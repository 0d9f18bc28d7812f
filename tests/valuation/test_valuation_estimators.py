"""Every estimator against closed-form games, exact values at modest budgets, and coverage."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fedguard import registry
from fedguard.errors import ConfigError
from fedguard.valuation.banzhaf import Banzhaf
from fedguard.valuation.base import Scores, Valuation
from fedguard.valuation.beta_shapley import BetaShapley
from fedguard.valuation.comfedsv import ComFedSV
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.fed_shapley import FederatedShapley
from fedguard.valuation.game import FunctionGame, Game
from fedguard.valuation.games import AdditiveGame, GloveGame, UnanimityGame, WeightedVotingGame
from fedguard.valuation.gtg_shapley import GTGShapley
from fedguard.valuation.kernel_shap import KernelShap
from fedguard.valuation.kernels import (
    banzhaf_size_distribution,
    beta_size_distribution,
    exact_banzhaf,
    exact_shapley,
    semivalue_from_table,
)
from fedguard.valuation.leave_one_out import LeaveOneOut
from fedguard.valuation.permutation import PermutationShapley
from fedguard.valuation.stratified import StratifiedShapley

WEIGHTS = [0.5, -1.0, 2.0, 0.25, 1.0]

# Closed-form Shapley values (independent of the bitmask kernel).
GAMES: dict[str, tuple[Callable[[], Game], torch.Tensor]] = {
    "additive": (
        lambda: AdditiveGame(WEIGHTS, base=0.3),
        torch.tensor(WEIGHTS, dtype=torch.float64),
    ),
    "unanimity": (
        lambda: UnanimityGame(5, [0, 3]),
        torch.tensor([0.5, 0, 0, 0.5, 0], dtype=torch.float64),
    ),
    "glove": (
        lambda: GloveGame([0], [1, 2, 3]),
        torch.tensor([0.75, 1 / 12, 1 / 12, 1 / 12], dtype=torch.float64),
    ),
    "voting": (
        lambda: WeightedVotingGame([4, 3, 2, 2, 1], 7),
        WeightedVotingGame([4, 3, 2, 2, 1], 7).shapley(),
    ),
}

SHAPLEY_ESTIMATORS: dict[str, tuple[Valuation, float]] = {
    "exact": (ExactShapley(), 1e-12),
    "permutation": (PermutationShapley(budget=1500), 0.06),
    "permutation_tmc": (PermutationShapley(budget=1500, truncation_tolerance=0.01), 0.07),
    "stratified": (StratifiedShapley(budget=1500), 0.06),
    "kernel_shap": (KernelShap(budget=1500), 0.06),
    "gtg_shapley": (GTGShapley(min_sweeps=60, max_sweeps=60), 0.06),
    "gtg_untruncated": (
        GTGShapley(
            truncation_tolerance=0.0, round_gain_tolerance=0.0, min_sweeps=60, max_sweeps=60
        ),
        0.06,
    ),
    "fed_shapley": (FederatedShapley(), 1e-12),
    "comfedsv": (ComFedSV(rank=1, regularization=1e-9), 1e-6),
}


# Truncation assumes a monotone game (Ghorbani & Zou): the additive game has a negative weight,
# so truncated permutations are biased there by design (the prefix {0, 2, 3} already reaches
# v(N), truncating players 1 and 4): TMC and GTG's truncation are checked on the monotone games.
PAIRS = [
    (e, g)
    for e in sorted(SHAPLEY_ESTIMATORS)
    for g in sorted(GAMES)
    if not (e in ("permutation_tmc", "gtg_shapley") and g == "additive")
]


@pytest.mark.parametrize(("estimator_name", "game_name"), PAIRS)
def test_shapley_estimators_on_closed_form_games(
    game_name: str, estimator_name: str, generator: torch.Generator
) -> None:
    make, expected = GAMES[game_name]
    estimator, tolerance = SHAPLEY_ESTIMATORS[estimator_name]
    scores = estimator.fit(make(), generator)
    assert scores.values.shape == expected.shape
    torch.testing.assert_close(scores.values, expected.to(torch.float64), atol=tolerance, rtol=0)
    assert bool((scores.lower <= scores.values).all() and (scores.values <= scores.upper).all())
    assert scores.n_queries >= scores.n_evaluations > 0


def _semivalue_oracle(game_name: str, game: Game, distribution: torch.Tensor) -> torch.Tensor:
    if game_name == "additive":
        return torch.tensor(WEIGHTS, dtype=torch.float64)  # every semivalue of an additive game
    if isinstance(game, UnanimityGame):
        return game.semivalue(distribution)  # closed form
    return semivalue_from_table(game.utilities(torch.arange(1 << game.n_players)), distribution)


@pytest.mark.parametrize("game_name", sorted(GAMES))
def test_banzhaf_and_beta_on_closed_form_games(game_name: str, generator: torch.Generator) -> None:
    make, _ = GAMES[game_name]
    game = make()
    n = game.n_players
    banzhaf = Banzhaf(budget=4000).fit(game, generator)
    expected = _semivalue_oracle(game_name, game, banzhaf_size_distribution(n))
    torch.testing.assert_close(banzhaf.values, expected, atol=0.08, rtol=0)
    assert banzhaf.target == "banzhaf"
    beta = BetaShapley(alpha=16.0, beta=1.0, budget=4000).fit(game, generator)
    expected = _semivalue_oracle(game_name, game, beta_size_distribution(n, 16.0, 1.0))
    torch.testing.assert_close(beta.values, expected, atol=0.08, rtol=0)
    assert beta.target == "beta(16,1)"


def test_unanimity_banzhaf_closed_form_value() -> None:
    # β_i = 2^{-(|T|-1)} on the carrier: 1/4 for |T| = 3.
    game = UnanimityGame(6, [1, 3, 4])
    torch.testing.assert_close(
        exact_banzhaf(game.utilities(torch.arange(64))),
        torch.tensor([0, 0.25, 0, 0.25, 0.25, 0], dtype=torch.float64),
    )


@pytest.mark.parametrize("game_name", sorted(GAMES))
def test_leave_one_out_closed_forms(game_name: str) -> None:
    make, _ = GAMES[game_name]
    game = make()
    expected = {
        "additive": WEIGHTS,
        "unanimity": [1, 0, 0, 1, 0],  # removing a carrier member loses everything
        "glove": [1, 0, 0, 0],  # a right glove is replaceable, the single left one is not
        "voting": [0, 0, 0, 0, 0],  # total 12, quota 7: nobody is pivotal for the grand coalition
    }[game_name]
    scores = LeaveOneOut().fit(game, torch.Generator())
    torch.testing.assert_close(scores.values, torch.tensor(expected, dtype=torch.float64))
    assert scores.n_evaluations == game.n_players + 1


# --------------------------------------------------------------------------------------------
# Axioms of the exact Shapley value


def _random_game(n: int, seed: int) -> FunctionGame:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64)
    bonus = float(torch.rand(1, generator=g))

    def utility(s: frozenset[int]) -> float:
        return float(sum(w[i] for i in s)) ** 0.5 + (bonus if {0, 1} <= s else 0.0)

    return FunctionGame(n, utility)


def test_exact_axioms(generator: torch.Generator) -> None:
    n = 6
    values = _random_game(n, 0).utilities(torch.arange(1 << n))
    other = _random_game(n, 1).utilities(torch.arange(1 << n))
    phi = exact_shapley(values)
    # efficiency
    assert float(phi.sum()) == pytest.approx(float(values[-1] - values[0]), abs=1e-12)
    # additivity
    torch.testing.assert_close(exact_shapley(values + other), phi + exact_shapley(other))
    # null player: a player 5 that changes nothing gets 0; symmetry: players 3 and 4 swapped
    masks = torch.arange(1 << n)
    without_5 = masks & ~(1 << 5)
    b3, b4 = (masks >> 3) & 1, (masks >> 4) & 1
    swapped = (without_5 & ~((1 << 3) | (1 << 4))) | (b3 << 4) | (b4 << 3)
    symmetric = values[without_5] + values[swapped]  # invariant under swapping 3 and 4
    scores = ExactShapley().fit(FunctionGame(n, lambda s: 0.0), generator)
    assert float(scores.values.abs().max()) == 0.0
    phi_sym = exact_shapley(symmetric)
    assert float(phi_sym[5]) == pytest.approx(0.0, abs=1e-12)
    assert float(phi_sym[3]) == pytest.approx(float(phi_sym[4]), abs=1e-12)


# --------------------------------------------------------------------------------------------
# Accuracy at modest budgets and interval coverage


@pytest.mark.parametrize(
    ("estimator", "target", "bound"),
    [
        (PermutationShapley(budget=64), "shapley", 0.2),
        (StratifiedShapley(budget=64), "shapley", 0.2),
        (KernelShap(budget=64), "shapley", 0.2),
        (Banzhaf(budget=256), "banzhaf", 0.35),
        (BetaShapley(budget=256), "beta", 0.35),
    ],
    ids=["permutation", "stratified", "kernel_shap", "banzhaf_32n", "beta_shapley_32n"],
)
def test_error_at_modest_budget(estimator: Valuation, target: str, bound: float) -> None:
    n = 8
    game = _random_game(n, 3)
    values = game.utilities(torch.arange(1 << n))
    reference = {
        "shapley": exact_shapley(values),
        "banzhaf": exact_banzhaf(values),
        "beta": semivalue_from_table(values, beta_size_distribution(n, 16.0, 1.0)),
    }[target]
    errors = []
    for seed in range(16):
        scores = estimator.fit(game, torch.Generator().manual_seed(seed))
        assert scores.n_evaluations <= (estimator.budget or 0)  # type: ignore[attr-defined]
        errors.append(float((scores.values - reference).norm() / reference.norm()))
    assert sum(errors) / len(errors) <= bound


@pytest.mark.parametrize(
    "estimator",
    [
        PermutationShapley(budget=32 * 5),
        StratifiedShapley(budget=32 * 5),
        KernelShap(budget=32 * 5),
    ],
    ids=["permutation", "stratified", "kernel_shap"],
)
def test_interval_coverage_on_small_game(estimator: Valuation) -> None:
    n = 5
    game = _random_game(n, 7)
    exact = exact_shapley(game.utilities(torch.arange(1 << n)))
    covered = total = 0
    tol = 1e-9  # kernel_shap enumerates every size of a 5-player game at 32n: a point interval
    for seed in range(60):
        scores = estimator.fit(game, torch.Generator().manual_seed(seed))
        covered += int(((scores.lower - tol <= exact) & (exact <= scores.upper + tol)).sum())
        total += n
    assert covered / total >= 0.90


# --------------------------------------------------------------------------------------------
# Reproducibility, registry, bad input


ALL = [
    ExactShapley(),
    LeaveOneOut(),
    PermutationShapley(budget=60),
    PermutationShapley(budget=60, truncation_tolerance=0.05),
    StratifiedShapley(budget=60),
    KernelShap(budget=60),
    Banzhaf(budget=60),
    BetaShapley(budget=60),
    GTGShapley(budget=60),
    FederatedShapley(),
    ComFedSV(),
]


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: repr(e)[:40])
def test_same_seed_same_result(estimator: Valuation) -> None:
    a = estimator.fit(_random_game(6, 2), torch.Generator().manual_seed(5))
    b = estimator.fit(_random_game(6, 2), torch.Generator().manual_seed(5))
    assert torch.equal(a.values, b.values) and torch.equal(a.std_errors, b.std_errors)
    assert isinstance(a, Scores) and a.values.dtype == torch.float64


def test_registry_resolves_every_valuation() -> None:
    names = registry.names("valuation")
    assert "exact" in names and "fedce" in names
    for name in names:
        assert issubclass(registry.get("valuation", name), Valuation)


def test_bad_input_messages(generator: torch.Generator) -> None:
    game = _random_game(6, 0)
    with pytest.raises(ConfigError, match="at least the number of clients \\(6\\)"):
        PermutationShapley(budget=5).fit(game, generator)
    with pytest.raises(ConfigError, match="at least 28 utility evaluations for stratified"):
        StratifiedShapley(budget=13).fit(game, generator)
    with pytest.raises(ConfigError, match="use a sampling method"):
        ExactShapley(max_players=4).fit(game, generator)
    with pytest.raises(ConfigError, match="truncation_tolerance must be"):
        PermutationShapley(truncation_tolerance=2.0)
    with pytest.raises(ConfigError, match="budget must be a positive"):
        KernelShap(budget=0)
    with pytest.raises(ConfigError, match="needs the clients' saved updates"):
        registry.create("valuation", "cosine").fit(game, generator)


def test_gtg_convergence_stops_early_on_additive_game(generator: torch.Generator) -> None:
    # Every permutation of an additive game gives the exact marginals: the running means do not
    # move, so GTG stops after min_sweeps sweeps of n guided permutations.
    game = AdditiveGame([0.2, 0.4, 0.6, 0.8])
    scores = GTGShapley(min_sweeps=2, max_sweeps=50).fit(game, generator)
    torch.testing.assert_close(
        scores.values, torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64)
    )
    assert scores.n_queries == 2 + 2 * 4 * 3  # v(∅), v(N), then 2 sweeps × 4 permutations × 3


def test_gtg_between_round_truncation_skips_flat_rounds(generator: torch.Generator) -> None:
    flat = FunctionGame(3, lambda s: 1.0)  # no gain at all
    scores = GTGShapley().fit(flat, generator)
    assert scores.info["skipped_rounds"] == 1 and float(scores.values.abs().sum()) == 0.0
    assert scores.n_queries == 2
