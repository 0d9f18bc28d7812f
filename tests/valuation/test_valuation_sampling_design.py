"""The sampling designs behind the estimators: the FedAvg first-order control variate (closed-form
semivalues against the table kernel), position-stratified cyclic permutations, distinct-evaluation
budgets, kernel size enumeration and the cluster bootstrap."""

from __future__ import annotations

import pytest
import torch

from fedguard.errors import ConfigError
from fedguard.valuation.banzhaf import Banzhaf
from fedguard.valuation.base import Valuation, scores_from_clustered_units
from fedguard.valuation.beta_shapley import BetaShapley
from fedguard.valuation.control_variate import MeanGainSurrogate, fit_surrogate
from fedguard.valuation.game import (
    FunctionGame,
    QueryTracker,
    TabularGame,
    all_masks,
    draw_within_budget,
)
from fedguard.valuation.kernel_shap import KernelShap, enumerated_sizes, size_masks
from fedguard.valuation.kernels import (
    banzhaf_size_distribution,
    beta_size_distribution,
    exact_shapley,
    semivalue_from_table,
    shapley_size_distribution,
)
from fedguard.valuation.permutation import (
    CyclicPermutations,
    PermutationShapley,
    permutation_units,
    prefix_masks,
)
from fedguard.valuation.stratified import StratifiedShapley


def _surrogate(n: int, seed: int) -> MeanGainSurrogate:
    g = torch.Generator().manual_seed(seed)
    return fit_surrogate(0.7, 0.7 + torch.randn(n, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize(
    "sizes",
    [
        shapley_size_distribution,
        banzhaf_size_distribution,
        lambda n: beta_size_distribution(n, 16, 1),
    ],
    ids=["shapley", "banzhaf", "beta16_1"],
)
def test_surrogate_semivalue_closed_form_matches_the_table(n: int, sizes: object) -> None:
    surrogate = _surrogate(n, n)
    table = surrogate.empty + surrogate.excess(all_masks(n))  # (2**n,)
    assert float(table[0]) == surrogate.empty  # u(∅) = v(∅)
    singles = table[torch.ones(n, dtype=torch.int64) << torch.arange(n)]
    torch.testing.assert_close(singles - surrogate.empty, surrogate.gains)  # u({i}) = v({i})
    distribution = sizes(n)  # type: ignore[operator]
    torch.testing.assert_close(
        surrogate.semivalue(distribution), semivalue_from_table(table, distribution)
    )


def test_surrogate_marginals_are_differences_of_its_table() -> None:
    n = 6
    surrogate = _surrogate(n, 3)
    table = surrogate.empty + surrogate.excess(all_masks(n))
    perms = torch.stack(
        [torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    )
    prefixes = prefix_masks(perms)  # (4, n)
    previous = torch.cat([torch.zeros(4, 1, dtype=torch.int64), prefixes[:, :-1]], dim=1)
    expected = torch.empty(4, n, dtype=torch.float64)
    expected.scatter_(1, perms, table[prefixes] - table[previous])
    torch.testing.assert_close(surrogate.marginals(perms), expected)


SAMPLERS: list[Valuation] = [
    PermutationShapley(budget=40),
    StratifiedShapley(budget=40),
    KernelShap(budget=40),
    Banzhaf(budget=40),
    BetaShapley(budget=40),
]


@pytest.mark.parametrize("estimator", SAMPLERS, ids=lambda e: type(e).__name__)
def test_control_variate_makes_a_fedavg_linear_game_exact(estimator: Valuation) -> None:
    # A game equal to its own first-order surrogate leaves a zero residual: every estimator with
    # the control variate returns the exact semivalue with zero spread, at any budget.
    n = 6
    surrogate = _surrogate(n, 11)
    game = TabularGame(surrogate.empty + surrogate.excess(all_masks(n)))
    table = game.values
    target = {
        "shapley": exact_shapley(table),
        "banzhaf": semivalue_from_table(table, banzhaf_size_distribution(n)),
        "beta": semivalue_from_table(table, beta_size_distribution(n, 16.0, 1.0)),
    }[estimator.target]
    scores = estimator.fit(game, torch.Generator().manual_seed(0))
    torch.testing.assert_close(scores.values, target)
    assert float(scores.std_errors.max()) < 1e-12
    assert scores.info["control_variate"] == "mean_gain"


@pytest.mark.parametrize("estimator", SAMPLERS, ids=lambda e: type(e).__name__)
def test_control_variate_keeps_estimators_unbiased(estimator: Valuation) -> None:
    # Mean over seeds with and without the control variate: both converge to the exact value.
    n = 5
    g = torch.Generator().manual_seed(4)
    weights = torch.rand(n, generator=g, dtype=torch.float64)
    game = FunctionGame(
        n, lambda s: float(sum(weights[i] for i in s)) ** 0.5 * (1 + 0.5 * (0 in s))
    )
    table = game.utilities(all_masks(n))
    target = {
        "shapley": exact_shapley(table),
        "banzhaf": semivalue_from_table(table, banzhaf_size_distribution(n)),
        "beta": semivalue_from_table(table, beta_size_distribution(n, 16.0, 1.0)),
    }[estimator.target]
    for control_variate in (True, False):
        variant = type(estimator)(budget=24, control_variate=control_variate)  # type: ignore[call-arg]
        mean = torch.stack(
            [variant.fit(game, torch.Generator().manual_seed(s)).values for s in range(300)]
        ).mean(dim=0)
        assert float((mean - target).norm() / target.norm()) < 0.03, control_variate


def test_cyclic_blocks_put_every_player_at_every_position_once() -> None:
    n = 7
    stream = CyclicPermutations(n, torch.Generator().manual_seed(0))
    for block in range(3):
        perms = torch.stack([stream() for _ in range(n)])  # (n, n)
        assert stream.block == block
        assert torch.equal(perms.sort(dim=1).values, torch.arange(n).expand(n, n))  # permutations
        assert torch.equal(perms.sort(dim=0).values, torch.arange(n).reshape(-1, 1).expand(n, n))


def test_a_complete_block_costs_its_arcs_and_its_reverses_are_free() -> None:
    n = 6
    game = FunctionGame(n, lambda s: float(len(s)))
    tracker = QueryTracker(game)
    tracker.raw_utilities(torch.tensor([0, (1 << n) - 1]))
    perms, blocks = permutation_units(tracker, 2 + n * (n - 1), True, torch.Generator())
    # the first block fits exactly; a later pair fits only if its prefixes happen to be arcs too
    assert perms.shape[0] >= n and torch.equal(blocks[:n], torch.zeros(n))
    perms = perms[:n]
    forward = set(prefix_masks(perms[:, 0])[:, :-1].reshape(-1).tolist())
    backward = set(prefix_masks(perms[:, 1])[:, :-1].reshape(-1).tolist())
    assert backward == forward and len(forward) == n * (n - 1)  # every proper cyclic arc of π


def test_draw_within_budget_counts_distinct_coalitions_only() -> None:
    game = FunctionGame(4, lambda s: 0.0)
    tracker = QueryTracker(game)
    masks = iter([torch.tensor([1, 2]), torch.tensor([2, 1]), torch.tensor([3]), torch.tensor([4])])
    units = draw_within_budget(tracker, 3, lambda: (torch.zeros(1), next(masks)), max_units=10)
    assert len(units) == 3  # {1, 2}, then a free repeat, then {3}; {4} would be a 4th coalition
    assert tracker.n_distinct == 0  # nothing evaluated by the draw itself


@pytest.mark.parametrize(
    ("n", "budget", "expected"),
    [(8, 64, [1, 7]), (8, 256, [1, 7, 2, 6, 3, 5, 4]), (8, 17, []), (5, 30, [1, 4, 2, 3])],
)
def test_kernel_enumerates_the_heaviest_sizes_that_fit(
    n: int, budget: int, expected: list[int]
) -> None:
    assert enumerated_sizes(n, budget) == expected


def test_kernel_shap_with_every_size_enumerated_is_exact() -> None:
    n = 5
    game = FunctionGame(n, lambda s: float(len(s) ** 1.5 + (2.0 if {0, 3} <= s else 0.0)))
    exact = exact_shapley(game.utilities(all_masks(n)))
    for control_variate in (True, False):
        scores = KernelShap(budget=1 << n, control_variate=control_variate).fit(
            game, torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(scores.values, exact)
        assert float(scores.std_errors.abs().max()) == 0.0


def test_budget_is_distinct_evaluations_for_every_sampler() -> None:
    n = 8
    game = FunctionGame(n, lambda s: float(len(s)) ** 0.5)
    for estimator in SAMPLERS:
        for budget in (3 * n, 8 * n, 300):
            try:
                variant = type(estimator)(budget=budget)  # type: ignore[call-arg]
                scores = variant.fit(game, torch.Generator().manual_seed(1))
            except ConfigError as exc:  # only a too-small budget may be refused, clearly
                assert "budget must be at least" in str(exc) and budget == 3 * n
                continue
            assert scores.n_evaluations <= min(budget, 1 << n)
            assert scores.n_queries >= scores.n_evaluations


def test_cluster_bootstrap_uses_blocks_as_units() -> None:
    game = FunctionGame(3, lambda s: 0.0)
    tracker = QueryTracker(game)
    units = torch.tensor([[1.0], [3.0], [10.0], [12.0]], dtype=torch.float64)
    blocks = torch.tensor([0, 0, 1, 1])
    scores = scores_from_clustered_units(
        "t", units, blocks, tracker, "shapley", 0.95, 400, torch.Generator().manual_seed(0)
    )
    assert scores.info["n_clusters"] == 2 and float(scores.values[0]) == 6.5
    # two block means 2 and 11: the bootstrap SE is about their spread / √2 · √(1/2)
    assert 3.0 < float(scores.std_errors[0]) < 6.0
    single = scores_from_clustered_units(
        "t", units, torch.zeros(4, dtype=torch.int64), tracker, "shapley", 0.95, 50,
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert single.info["interval"].startswith("units of one block")


def test_size_masks_lists_each_coalition_once_without_a_grid() -> None:
    # torch.combinations would allocate 30**29 entries here
    masks = size_masks(30, 29)
    assert masks.shape == (30,) and len(set(masks.tolist())) == 30
    assert all(bin(m).count("1") == 29 for m in masks.tolist())
    assert size_masks(6, 2).shape == (15,)
