"""Round games: MR/OR reconstruction, per-round estimators and the gradient proxies."""

from __future__ import annotations

import math

import pytest
import torch

from fedguard.valuation.comfedsv import ComFedSV, complete_low_rank
from fedguard.valuation.cosine import CosineReputation
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.fed_shapley import FederatedShapley
from fedguard.valuation.fedce import FedCE
from fedguard.valuation.game import RoundGame, mask_bits
from fedguard.valuation.gtg_shapley import GTGShapley
from fedguard.valuation.reconstruction import (
    MultiRoundReconstruction,
    OneRoundReconstruction,
    RoundUpdates,
    coalition_aggregates,
)
from fedguard.valuation.synthetic import make_synthetic_run


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    return make_synthetic_run(n_clients=5, n_rounds=4, seed=3)


def test_coalition_aggregate_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(3, 4, generator=g, dtype=torch.float64)
    rnd = RoundUpdates(
        torch.zeros(4, dtype=torch.float64),
        torch.tensor([4, 1, 2]),
        deltas,
        torch.tensor([3, 1, 6]),
    )
    masks = torch.tensor([0, 0b10110, 0b00100, 0b10001])
    agg = coalition_aggregates(rnd, masks)
    torch.testing.assert_close(agg[0], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(agg[1], (3 * deltas[0] + 1 * deltas[1] + 6 * deltas[2]) / 10)
    torch.testing.assert_close(agg[2], deltas[2])
    torch.testing.assert_close(agg[3], deltas[0])  # client 0 is not in the round


def test_mr_and_or_reproduce_the_trained_models(run) -> None:  # type: ignore[no-untyped-def]
    n = run.n_clients
    mr = MultiRoundReconstruction(run.rounds, n, run.evaluate)
    grand = (1 << n) - 1
    for r in range(len(run.rounds) - 1):
        next_global = run.rounds[r + 1].global_params.reshape(1, -1)
        assert mr.round_utility(r, grand) == pytest.approx(float(run.evaluate(next_global)[0]))
        current = run.rounds[r].global_params.reshape(1, -1)
        assert mr.round_utility(r, 0) == pytest.approx(float(run.evaluate(current)[0]))
    orr = OneRoundReconstruction(run.rounds, n, run.evaluate)
    last = run.rounds[-1]
    final = last.global_params + last.weights() @ last.deltas
    assert orr.utility(grand) == pytest.approx(float(run.evaluate(final.reshape(1, -1))[0]))
    assert orr.utility(0) == pytest.approx(
        float(run.evaluate(run.initial_params.reshape(1, -1))[0])
    )


def test_federated_shapley_equals_exact_on_mr_sum(run) -> None:  # type: ignore[no-untyped-def]
    # Additivity: Σ_r Shapley(v_r) = Shapley(Σ_r v_r); non-participants are null in their round.
    rounds = list(run.rounds)
    keep = [torch.tensor([0, 1, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 4]), None]
    partial = []
    for rnd, ids in zip(rounds, keep, strict=True):
        if ids is None:
            partial.append(rnd)
        else:
            partial.append(
                RoundUpdates(rnd.global_params, ids, rnd.deltas[ids], rnd.num_samples[ids])
            )
    mr = MultiRoundReconstruction(partial, run.n_clients, lambda p: run.evaluate(p, "loss"))
    g = torch.Generator().manual_seed(0)
    fed = FederatedShapley().fit(mr, g)
    exact = ExactShapley().fit(mr, g)
    torch.testing.assert_close(fed.values, exact.values, atol=1e-10, rtol=0)
    assert float(fed.std_errors.abs().max()) == 0.0
    # each round's values live on its participants only
    view = mr.round_view(2)
    assert view.players == (0, 4)


def test_gtg_matches_federated_shapley_without_truncation(run) -> None:  # type: ignore[no-untyped-def]
    mr = MultiRoundReconstruction(run.rounds, run.n_clients, lambda p: run.evaluate(p, "loss"))
    g = torch.Generator().manual_seed(1)
    fed = FederatedShapley().fit(mr, g)
    gtg = GTGShapley(
        truncation_tolerance=0.0, round_gain_tolerance=0.0, min_sweeps=40, max_sweeps=40
    ).fit(mr, g)
    assert float((gtg.values - fed.values).norm() / fed.values.norm()) < 0.1
    assert gtg.evaluation_unit == "round-coalition"
    covered = ((gtg.lower <= fed.values) & (fed.values <= gtg.upper)).float().mean()
    assert float(covered) >= 0.8


class _RankOneRounds(RoundGame):
    """``v_r(S) = α_r · Σ_{i∈S∩P_r} w_i``: rank one across rounds, partial participation."""

    alphas = (1.0, 2.0, 0.5, 1.5)
    weights = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=torch.float64)
    parts = ((0, 1, 2, 3), (1, 2, 3), (0, 2, 3), (0, 1, 3))  # every coalition seen once

    def participants(self, round_index: int) -> tuple[int, ...]:
        return self.parts[round_index]

    def _evaluate_round(self, round_index: int, masks: torch.Tensor) -> torch.Tensor:
        bits = mask_bits(masks, 4).to(torch.float64)
        return self.alphas[round_index] * (bits @ self.weights)


def test_comfedsv_completes_rank_one_rounds() -> None:
    game = _RankOneRounds(4, 4)
    g = torch.Generator().manual_seed(0)
    scores = ComFedSV(rank=1, regularization=1e-9, n_iterations=300).fit(game, g)
    # The completed matrix is α_r Σ w_i for every coalition, so every client is valued in every
    # round: φ = (Σ_r α_r) w, where the federated Shapley value misses absent rounds.
    torch.testing.assert_close(scores.values, sum(game.alphas) * game.weights, atol=1e-6, rtol=0)
    fed = FederatedShapley().fit(game, g)
    expected_fed = torch.zeros(4, dtype=torch.float64)
    for r, ids in enumerate(game.parts):
        expected_fed[list(ids)] += game.alphas[r] * game.weights[list(ids)]
    torch.testing.assert_close(fed.values, expected_fed)


def test_low_rank_completion_recovers_missing_entries() -> None:
    g = torch.Generator().manual_seed(4)
    truth = torch.randn(6, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 30, generator=g, dtype=torch.float64
    )
    mask = torch.rand(6, 30, generator=g) < 0.7
    completed = complete_low_rank(truth, mask, 2, 1e-8, 500, g)
    assert float((completed - truth).abs().max()) < 1e-3


def _orthonormal_round(n: int, ids: list[int]) -> RoundUpdates:
    eye = torch.eye(n, dtype=torch.float64)
    return RoundUpdates(
        torch.zeros(n, dtype=torch.float64),
        torch.tensor(ids),
        eye[ids],
        torch.ones(len(ids), dtype=torch.int64),
    )


def _linear_evaluator(params: torch.Tensor) -> torch.Tensor:
    return params.sum(dim=1) / 10.0  # U(θ) = Σθ / 10


def test_cosine_reputation_closed_forms(generator: torch.Generator) -> None:
    n, rounds = 4, 3
    mr = MultiRoundReconstruction(
        [_orthonormal_round(n, list(range(n)))] * rounds, n, _linear_evaluator
    )
    scores = CosineReputation().fit(mr, generator)
    # cos(e_i, mean e_j) = 1/√n every round; r = (1 − 0.95^T)/√n from r₀ = 0
    expected = (1 - 0.95**rounds) / math.sqrt(n)
    torch.testing.assert_close(scores.values, torch.full((n,), expected, dtype=torch.float64))
    # identical updates (cos 1) for clients 0, 1; a zero update (cos 0) for client 2,
    # who skips round 1
    d = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    r0 = RoundUpdates(
        torch.zeros(2, dtype=torch.float64), torch.tensor([0, 1, 2]), d, torch.ones(3)
    )
    r1 = RoundUpdates(
        torch.zeros(2, dtype=torch.float64), torch.tensor([0, 1]), d[:2], torch.ones(2)
    )
    game = MultiRoundReconstruction([r0, r1], 3, _linear_evaluator)
    values = CosineReputation().fit(game, generator).values
    torch.testing.assert_close(
        values, torch.tensor([1 - 0.95**2, 1 - 0.95**2, 0.0], dtype=torch.float64)
    )


def test_fedce_closed_forms(generator: torch.Generator) -> None:
    # Δ_0 = Δ_1 = e_1, Δ_2 = e_2, equal weights:
    # cos(e_1, (e_1 + e_2)/3) = 1/√2 and cos(e_2, 2e_1/3) = 0
    d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    rnd = RoundUpdates(
        torch.zeros(2, dtype=torch.float64), torch.tensor([0, 1, 2]), d, torch.ones(3)
    )
    game = MultiRoundReconstruction([rnd], 3, _linear_evaluator)
    grad = FedCE(space="gradient").fit(game, generator).values
    raw = torch.tensor([1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2), 1.0], dtype=torch.float64)
    torch.testing.assert_close(grad, raw / raw.sum())
    # data space: minus models θ = mean of the other two updates → U = Σθ/10 = 0.1 for everyone
    data = FedCE(space="data").fit(game, generator)
    torch.testing.assert_close(data.values, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert data.n_evaluations == 3
    both = FedCE().fit(game, generator).values
    torch.testing.assert_close(both, raw / raw.sum())  # product with a uniform factor
    assert float(both.sum()) == pytest.approx(1.0)


def test_synthetic_scenario_ranks_bad_clients_last() -> None:
    run = make_synthetic_run(
        n_clients=6, n_rounds=6, duplicate_of_zero=5, random_label_client=3, free_rider=4, seed=1
    )
    mr = MultiRoundReconstruction(run.rounds, 6, run.evaluate)
    scores = ExactShapley().fit(mr, torch.Generator())
    worst_two = set(torch.argsort(scores.values)[:2].tolist())
    assert worst_two == {3, 4}
    assert float(scores.values[5]) == pytest.approx(float(scores.values[0]), abs=1e-12)


@pytest.mark.parametrize("name", ["cosine", "fedce", "gtg_shapley", "fed_shapley", "comfedsv"])
def test_round_methods_through_registry(run, name: str) -> None:  # type: ignore[no-untyped-def]
    from fedguard import registry

    mr = MultiRoundReconstruction(run.rounds, run.n_clients, lambda p: run.evaluate(p, "loss"))
    scores = registry.create("valuation", name).fit(mr, torch.Generator().manual_seed(0))
    assert scores.values.shape == (run.n_clients,)
    assert bool(torch.isfinite(scores.values).all())
    assert bool((scores.lower <= scores.values).all() and (scores.values <= scores.upper).all())
