"""Issue 8's digits scenario at a small scale (untimed): exact MR Shapley on 8 clients, one an
exact duplicate of client 0, one with uniformly random labels, one zero-update free-rider."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedguard.config import parse_spec
from fedguard.launch import execute
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.game import RoundGame
from fedguard.valuation.kernel_shap import KernelShap
from fedguard.valuation.permutation import PermutationShapley
from fedguard.valuation.stratified import StratifiedShapley
from fedguard.valuation.utilities import LoadedRun, build_game, load_run

N_CLIENTS = 8
DUPLICATE = 7


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> LoadedRun:
    torch.set_num_threads(1)
    spec = parse_spec(
        {
            "name": "contrib-scenario",
            "seed": 0,
            "rounds": 5,
            "save_updates": True,
            "clients": {"n_clients": N_CLIENTS},
            "model": "logreg",
            "data": {"duplicate_clients": {DUPLICATE: 0}},
            "attack": {
                "n_malicious": 1,
                "data_attack": {"name": "random_labels"},
                "free_riders": {"name": "zero", "count": 1},
            },
        }
    )
    out: Path = tmp_path_factory.mktemp("scenario") / "run"
    execute(spec, out)
    return load_run(out)


def test_roles_are_distinct_from_the_duplicate_pair(scenario: LoadedRun) -> None:
    roles = {*scenario.simulation.malicious, *scenario.simulation.free_riders}
    assert len(roles) == 2
    assert roles.isdisjoint({0, DUPLICATE})


def test_random_labels_and_free_rider_rank_last(scenario: LoadedRun) -> None:
    game = build_game(scenario, "reconstruct-multi-round", "loss")
    assert isinstance(game, RoundGame)
    exact = ExactShapley().fit(game, torch.Generator().manual_seed(0))
    ranks = exact.ranks()
    flagged = [*scenario.simulation.malicious, *scenario.simulation.free_riders]
    assert sorted(int(ranks[i]) for i in flagged) == [N_CLIENTS - 1, N_CLIENTS]
    # the honest clients are worth more than either flagged client
    honest = [i for i in range(N_CLIENTS) if i not in flagged]
    assert float(exact.values[honest].min()) > float(exact.values[flagged].max())


def test_duplicate_within_one_interval_width_of_client_zero(scenario: LoadedRun) -> None:
    game = build_game(scenario, "reconstruct-multi-round", "loss")
    assert isinstance(game, RoundGame)
    exact = ExactShapley().fit(game, torch.Generator().manual_seed(0))
    sampled = PermutationShapley(budget=32 * N_CLIENTS).fit(
        game.total(), torch.Generator().manual_seed(0)
    )
    width = float(sampled.upper[0] - sampled.lower[0])
    assert 0.0 < width < float(exact.values.abs().max())  # a finite, informative interval
    gaps = (exact.values - exact.values[0]).abs()  # (n,)
    assert float(gaps[DUPLICATE]) <= width
    # near-symmetry: of all clients, the duplicate is the one valued closest to client 0
    assert int(torch.argmin(gaps[1:])) + 1 == DUPLICATE


SAMPLERS = {
    "permutation": PermutationShapley,
    "stratified": StratifiedShapley,
    "kernel_shap": KernelShap,
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampling_estimators_within_target_at_8n(scenario: LoadedRun, name: str) -> None:
    game = build_game(scenario, "reconstruct-multi-round", "loss")
    assert isinstance(game, RoundGame)
    total = game.total()
    exact = ExactShapley().fit(game, torch.Generator().manual_seed(0)).values
    errors = []
    for seed in range(10):
        scores = SAMPLERS[name](budget=8 * N_CLIENTS).fit(
            total, torch.Generator().manual_seed(seed)
        )
        assert scores.n_evaluations <= 8 * N_CLIENTS
        errors.append(float((scores.values - exact).norm() / exact.norm()))
    assert sum(errors) / len(errors) <= 0.2


@pytest.mark.parametrize("name", ["permutation", "stratified"])
def test_intervals_cover_exact_values_at_32n(scenario: LoadedRun, name: str) -> None:
    game = build_game(scenario, "reconstruct-multi-round", "loss")
    assert isinstance(game, RoundGame)
    total = game.total()
    exact = ExactShapley().fit(game, torch.Generator().manual_seed(0)).values
    covered = 0
    for seed in range(20):
        scores = SAMPLERS[name](budget=32 * N_CLIENTS).fit(
            total, torch.Generator().manual_seed(seed)
        )
        covered += int(((scores.lower <= exact) & (exact <= scores.upper)).sum())
    assert covered / (20 * N_CLIENTS) >= 0.9
