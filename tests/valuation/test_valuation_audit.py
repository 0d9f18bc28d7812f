"""Audit checks: efficiency gap, flags, symmetry on duplicates, null players, rank agreement."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from fedguard.valuation.audit import (
    FREE_RIDER,
    POISONER,
    audit,
    empirical_null_players,
    rank_agreement,
)
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.games import AdditiveGame, UnanimityGame
from fedguard.valuation.leave_one_out import LeaveOneOut
from fedguard.valuation.permutation import PermutationShapley
from fedguard.valuation.reconstruction import MultiRoundReconstruction
from fedguard.valuation.synthetic import make_synthetic_run


def test_efficiency_and_flags_on_additive_game(generator: torch.Generator) -> None:
    game = AdditiveGame([1.0, 1.0, 0.01, -0.5])
    exact = ExactShapley().fit(game, generator)
    report = audit(exact, game, threshold=0.1)
    assert report.total_gain == pytest.approx(1.51)
    assert report.efficiency_gap == pytest.approx(0.0, abs=1e-12)
    # fair share 1.51 / 4 ≈ 0.38: 0.01 is below 10% of it, −0.5 below zero
    assert report.flags == ("", "", FREE_RIDER, POISONER)


def test_efficiency_gap_of_leave_one_out(generator: torch.Generator) -> None:
    game = UnanimityGame(3, [0, 1])
    loo = LeaveOneOut().fit(game, generator)  # (1, 1, 0): Σ = 2 while v(N) − v(∅) = 1
    assert audit(loo, game).efficiency_gap == pytest.approx(1.0)


def test_null_player_detected_and_checked(generator: torch.Generator) -> None:
    game = UnanimityGame(4, [0, 2])
    scores = ExactShapley().fit(game, generator)
    assert empirical_null_players(game) == (1, 3)
    report = audit(scores, game)
    assert [(i, ok) for i, _, ok in report.null_players] == [(1, True), (3, True)]


def test_symmetry_on_duplicate_client_and_agreement() -> None:
    run = make_synthetic_run(n_clients=5, n_rounds=3, duplicate_of_zero=4, seed=2)
    mr = MultiRoundReconstruction(run.rounds, 5, lambda p: run.evaluate(p, "loss"))
    exact = ExactShapley().fit(mr, torch.Generator())
    sampled = PermutationShapley(budget=200).fit(mr, torch.Generator().manual_seed(0))
    report = audit(sampled, mr, duplicates=[(0, 4)], others=[exact])
    (i, j, gap, within) = report.symmetry[0]
    assert (i, j) == (0, 4) and within
    assert gap <= float(sampled.upper[0] - sampled.lower[0])
    assert audit(exact, mr, duplicates=[(0, 4)]).symmetry[0][2] == pytest.approx(0.0, abs=1e-12)
    agreement = report.agreements[0]
    a, b = sampled.values.numpy(), exact.values.numpy()
    assert agreement.spearman == pytest.approx(stats.spearmanr(a, b).statistic)
    assert agreement.kendall == pytest.approx(stats.kendalltau(a, b).statistic)
    same = rank_agreement(exact, exact)
    assert same.spearman == pytest.approx(1.0) and same.kendall == pytest.approx(1.0)
    assert report.to_dict()["agreements"][0]["method_b"] == "exact"
