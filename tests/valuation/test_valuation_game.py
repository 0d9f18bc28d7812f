"""Games: bitmask helpers, caching and counting, round games, closed-form oracles."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fedguard.errors import ConfigError
from fedguard.valuation.game import (
    FunctionGame,
    Game,
    QueryTracker,
    RoundGame,
    SingleRoundGame,
    TabularGame,
    as_game,
    as_round_game,
    bits_to_masks,
    mask_bits,
    members,
    popcount,
    to_mask,
)
from fedguard.valuation.games import AdditiveGame, GloveGame, UnanimityGame, WeightedVotingGame
from fedguard.valuation.kernels import (
    banzhaf_size_distribution,
    beta_size_distribution,
    exact_shapley,
    semivalue_from_table,
    shapley_size_distribution,
)


def brute_force_shapley(game: Game) -> torch.Tensor:
    """Permutation definition: average marginal contribution over all n! orders."""
    n = game.n_players
    phi = torch.zeros(n, dtype=torch.float64)
    for order in itertools.permutations(range(n)):
        mask, prev = 0, game.utility(0)
        for p in order:
            mask |= 1 << p
            value = game.utility(mask)
            phi[p] += value - prev
            prev = value
    return phi / math.factorial(n)


def test_mask_helpers_round_trip() -> None:
    assert to_mask(frozenset({0, 2}), 3) == 5
    assert to_mask([1], 3) == 2
    assert members(5) == frozenset({0, 2})
    masks = torch.tensor([0, 5, 7, 6])
    bits = mask_bits(masks, 3)
    assert bits.tolist()[1] == [True, False, True]
    assert torch.equal(bits_to_masks(bits), masks)
    assert popcount(masks, 3).tolist() == [0, 2, 3, 2]
    with pytest.raises(ConfigError, match="coalition members"):
        to_mask([3], 3)
    with pytest.raises(ConfigError, match="coalition mask"):
        to_mask(8, 3)


def test_cache_counts_fresh_evaluations_only() -> None:
    calls: list[frozenset[int]] = []

    def utility(s: frozenset[int]) -> float:
        calls.append(s)
        return float(len(s))

    game = FunctionGame(3, utility)
    assert game.utility(frozenset({0, 1})) == 2.0
    assert game.utility(3) == 2.0  # same coalition as a mask: cached
    game.utilities(torch.tensor([3, 3, 4, 0]))
    assert game.n_evaluations == 3
    assert len(calls) == 3
    tracker = QueryTracker(game)
    tracker.utilities(torch.tensor([3, 3, 5]))
    assert (tracker.n_queries, tracker.n_distinct) == (3, 2)
    assert game.n_evaluations == 4


def test_tabular_game_and_size_check() -> None:
    game = TabularGame(torch.arange(8, dtype=torch.float64))
    assert game.n_players == 3 and game.utility(5) == 5.0
    with pytest.raises(ConfigError, match="2\\*\\*n"):
        TabularGame(torch.zeros(6))


@pytest.mark.parametrize(
    "game",
    [
        AdditiveGame([0.5, -1.0, 2.0, 0.25]),
        UnanimityGame(5, [0, 3]),
        GloveGame([0, 1], [2, 3, 4]),
        WeightedVotingGame([4, 3, 2, 2, 1], 7),
    ],
    ids=["additive", "unanimity", "glove", "voting"],
)
def test_vectorized_shapley_equals_permutation_definition(game: Game) -> None:
    values = game.utilities(torch.arange(1 << game.n_players))
    torch.testing.assert_close(exact_shapley(values), brute_force_shapley(game))


def test_closed_forms() -> None:
    glove = GloveGame([0], [1, 2, 3])
    phi = exact_shapley(glove.utilities(torch.arange(16)))
    torch.testing.assert_close(
        phi, torch.tensor([0.75, 1 / 12, 1 / 12, 1 / 12], dtype=torch.float64)
    )
    torch.testing.assert_close(phi, glove.shapley())
    torch.testing.assert_close(
        GloveGame([0, 1], [2, 3]).shapley(), torch.full((4,), 0.5, dtype=torch.float64)
    )
    # Shapley & Shubik's classic [51; 50, 49, 1]: the big party holds 2/3 of the power.
    voting = WeightedVotingGame([50, 49, 1], 51)
    torch.testing.assert_close(
        voting.shapley(), torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64)
    )
    unanimity = UnanimityGame(6, [1, 3, 4])
    values = unanimity.utilities(torch.arange(64))
    torch.testing.assert_close(
        semivalue_from_table(values, banzhaf_size_distribution(6)),
        unanimity.semivalue(banzhaf_size_distribution(6)),
    )
    assert float(unanimity.semivalue(banzhaf_size_distribution(6))[1]) == pytest.approx(0.25)


def test_weighted_voting_counting_oracle_matches_bitmask_values() -> None:
    game = WeightedVotingGame([5, 4, 3, 2, 2, 1, 1], 10)
    torch.testing.assert_close(exact_shapley(game.utilities(torch.arange(128))), game.shapley())


def test_size_distributions() -> None:
    for n in (1, 4, 9):
        for dist in (
            shapley_size_distribution(n),
            banzhaf_size_distribution(n),
            beta_size_distribution(n, 16.0, 1.0),
        ):
            assert float(dist.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(beta_size_distribution(7, 1.0, 1.0), shapley_size_distribution(7))
    beta = beta_size_distribution(7, 16.0, 1.0)
    assert bool((beta[:-1] > beta[1:]).all())  # Beta(16, 1) favours small coalitions


class _TwoRounds(RoundGame):
    """Round 0: clients {0, 1} additive; round 1: clients {1, 2}, unanimity of both."""

    def participants(self, round_index: int) -> tuple[int, ...]:
        return (0, 1) if round_index == 0 else (1, 2)

    def _evaluate_round(self, round_index: int, masks: torch.Tensor) -> torch.Tensor:
        bits = mask_bits(masks, 3).to(torch.float64)
        if round_index == 0:
            return bits[:, 0] * 1.0 + bits[:, 1] * 2.0
        return bits[:, 1] * bits[:, 2]


def test_round_game_restricts_to_participants_and_sums() -> None:
    rg = _TwoRounds(3, 2)
    assert rg.round_utility(0, [0, 1, 2]) == 3.0  # client 2 absent in round 0
    assert rg.round_utility(1, [0]) == 0.0
    total = rg.total()
    assert total is rg.total()
    assert total.utility([0, 1, 2]) == 4.0
    phi = exact_shapley(total.utilities(torch.arange(8)))
    torch.testing.assert_close(phi, torch.tensor([1.0, 2.5, 0.5], dtype=torch.float64))
    view = rg.round_view(1)
    assert view.players == (1, 2) and view.utility(3) == 1.0
    assert as_game(rg) is total
    single = as_round_game(AdditiveGame([1.0, 2.0]))
    assert isinstance(single, SingleRoundGame) and single.n_rounds == 1
    with pytest.raises(ConfigError, match="round must be"):
        rg.round_utilities(2, [0])


@pytest.mark.parametrize("utility", ["accuracy", "loss"])
def test_the_evaluator_runs_the_test_set_in_slices(utility: str, monkeypatch) -> None:
    """Coalitions' models are scored on slices of the test set (256 models on a whole CIFAR
    test set at once needed 256 copies of every activation): images model by model on a CPU,
    other inputs vmapped under the input budget; the utilities are those of one pass."""
    import fedguard.models.flat as flat
    import fedguard.valuation.utilities as utilities
    from fedguard.models.flat import FlatModel

    torch.manual_seed(0)
    model = FlatModel.of(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)))
    params = model.initial_params()[None] + 0.3 * torch.randn(5, model.layout.dim)
    images, labels = torch.randn(40, 1, 4, 4), torch.randint(0, 3, (40,))
    monkeypatch.setattr(flat, "evaluation_batch", lambda x: 16)
    monkeypatch.setattr(flat, "INPUT_ELEMENTS", 16 * 5 * 6)  # 6 samples for 5 models
    calls: list[int] = []
    original = FlatModel.forward
    monkeypatch.setattr(
        FlatModel, "forward", lambda self, f, x: (calls.append(len(x)), original(self, f, x))[1]
    )
    for x, expected_calls in ((images, [16] * 5 + [16] * 5 + [8] * 5), (images.flatten(1), None)):
        with torch.no_grad():
            logits = torch.stack([original(model, p, x) for p in params])  # (5, 40, 3)
        if utility == "accuracy":
            expected = (logits.argmax(-1) == labels).double().mean(-1)
        else:
            logp = torch.log_softmax(logits.double(), -1)
            expected = logp.gather(-1, labels.expand(5, -1)[..., None]).squeeze(-1).mean(-1)
        calls.clear()
        got = utilities.make_evaluator(model, x, labels, utility)(params)
        if expected_calls is not None:
            assert calls == expected_calls
        else:
            assert max(calls) == 6 and sum(calls) == 40
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)  # float32 logits
