"""Contribution flags: one-sided tests with Holm's correction, zero-update free-riders (issue 15.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from fedguard.cli.contrib_command import contrib_command, valuate
from fedguard.config import load_spec, parse_spec
from fedguard.launch import execute
from fedguard.valuation.audit import (
    FREE_RIDER,
    POISONER,
    audit,
    efficiency_gap,
    flag_clients,
    holm_reject,
    interval_dof,
    one_sided_p_values,
    zero_update_clients,
)
from fedguard.valuation.base import Scores, sampled_scores
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.reconstruction import MultiRoundReconstruction
from fedguard.valuation.synthetic import make_synthetic_run
from fedguard.valuation.utilities import build_game, load_run


def _holm_by_adjusted_p(p: list[float], alpha: float) -> list[bool]:
    """Holm via adjusted p-values: p̃_(k) = max_{j ≤ k} min(1, (n − j + 1)·p_(j)) ≤ α."""
    n = len(p)
    order = sorted(range(n), key=lambda i: p[i])
    adjusted, running = [0.0] * n, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (n - k) * p[i]))
        adjusted[i] = running
    return [a <= alpha for a in adjusted]


def test_holm_step_down_closed_form_and_adjusted_p_values() -> None:
    p = torch.tensor([0.01, 0.04, 0.03, 0.005], dtype=torch.float64)
    # 0.005 ≤ 0.05/4, 0.01 ≤ 0.05/3, 0.03 > 0.05/2: stop
    assert holm_reject(p, 0.05).tolist() == [True, False, False, True]
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 25, (1,), generator=gen))
        q = torch.rand(n, generator=gen, dtype=torch.float64) ** 4
        assert holm_reject(q, 0.025).tolist() == _holm_by_adjusted_p(q.tolist(), 0.025)


def _t_scores(values: torch.Tensor, se: torch.Tensor, dof: int, confidence: float) -> Scores:
    q = float(stats.t.ppf(0.5 + confidence / 2, dof))
    return Scores("test", values, se, values - q * se, values + q * se, 0, 0, confidence=confidence)


def test_p_values_agree_with_the_interval_before_correction() -> None:
    gen = torch.Generator().manual_seed(1)
    units = torch.randn(7, 5, generator=gen, dtype=torch.float64) + torch.linspace(-1, 1, 5)
    replicates = units[torch.randint(7, (200, 7), generator=gen)].mean(dim=1)
    scores = sampled_scores("m", units.mean(0), replicates, 7, 7, 7, "shapley", 0.9)
    assert torch.allclose(interval_dof(scores), torch.full((5,), 6.0, dtype=torch.float64))
    for bound in torch.linspace(-1.5, 1.5, 31).tolist():
        below = one_sided_p_values(scores, bound) < 0.05  # (1 − 0.9)/2
        assert below.tolist() == (scores.upper < bound).tolist(), bound
    # no sampling error: a value below the bound is certain; unknown error: never flagged
    exact = _t_scores(torch.tensor([-1.0, 1.0], dtype=torch.float64), torch.zeros(2), 5, 0.95)
    assert one_sided_p_values(exact, 0.0).tolist() == [0.0, 1.0]
    unknown = _t_scores(torch.tensor([-5.0]), torch.tensor([float("inf")]), 5, 0.95)
    assert one_sided_p_values(unknown, 0.0).tolist() == [1.0]


def test_honest_clients_are_not_flagged_by_chance() -> None:
    """400 simulated valuations of 20 honest clients whose true values all sit at the free-rider
    bound (0.1 × fair share, the hardest case): the uncorrected rule flags someone in about
    1 − 0.975²⁰ ≈ 40% of them; with Holm each flag type errs in at most 2.5%, both in ≤ 5%."""
    n, dof, fair, runs = 20, 30, 1.0, 200
    se = torch.full((n,), fair / 2.5, dtype=torch.float64)
    noise = stats.t.rvs(dof, size=(runs, n), random_state=np.random.default_rng(0))
    old_runs = new_runs = 0
    for row in torch.from_numpy(noise):
        scores = _t_scores(0.1 * fair + se * row, se, dof, 0.95)
        old_runs += bool((scores.upper < 0.1 * fair).any())
        new_runs += any(flag_clients(scores, 0.1, total_gain=fair * n))
    assert old_runs / runs > 0.3, old_runs
    assert new_runs / runs <= 0.05, new_runs


def test_a_no_attacker_run_flags_nobody(tmp_path: Path) -> None:
    """Digits, 20 IID honest clients, 5 rounds (quickstart otherwise): with the stratified
    estimator's seed 1 the uncorrected rule flagged client 4 ``free-rider?``."""
    torch.set_num_threads(1)
    spec = load_spec("configs/quickstart.yaml").with_overrides(
        **{"seed": 1, "rounds": 5, "save_updates": True, "data.partition": "iid"}
    )
    assert spec.attack.n_malicious == 0 and spec.attack.free_riders is None
    run_dir = tmp_path / "iid"
    execute(spec, run_dir)
    run = load_run(run_dir)
    game = build_game(run, "reconstruct-multi-round", "loss")
    scores = valuate(game, "stratified", None, seed=1)
    _, gain = efficiency_gap(scores, game)
    old = (scores.upper < 0.1 * abs(gain) / 20).nonzero().flatten().tolist()
    assert old == [4]
    assert audit(scores, game).flags == ("",) * 20


def test_zero_update_free_rider_is_a_free_rider_not_harmful() -> None:
    run = make_synthetic_run(n_clients=5, n_rounds=3, free_rider=3, seed=0)
    game = MultiRoundReconstruction(run.rounds, 5, lambda p: run.evaluate(p, "loss"))
    exact = ExactShapley().fit(game, torch.Generator())
    assert float(exact.values[3]) < 0  # dilutes the sample-weighted mean: a negative value
    assert audit(exact, game).flags[3] == POISONER  # what the value alone says
    silent = zero_update_clients(run.rounds)
    assert silent == (3,)
    flags = audit(exact, game, zero_update=silent).flags
    assert flags[3] == FREE_RIDER and flags.count("") == 4


def test_contrib_flags_a_zero_update_free_rider_and_states_the_correction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    spec = parse_spec(
        {
            "seed": 1,
            "rounds": 3,
            "save_updates": True,
            "clients": {"n_clients": 5},
            "model": "logreg",
            "attack": {"free_riders": {"name": "zero", "count": 1}},
        }
    )
    execute(spec, tmp_path / "run")
    free = load_run(tmp_path / "run").simulation.free_riders
    assert contrib_command(tmp_path / "run", "exact", None, "loss", False) == 0
    text = capsys.readouterr().out
    assert "Holm's correction over the 5 clients" in text
    rows = (tmp_path / "run" / "contributions.csv").read_text().splitlines()[1:]
    flags = {int(r.split(",")[0]): r.split(",")[-1] for r in rows}
    assert [c for c, f in flags.items() if f] == list(free) and flags[free[0]] == FREE_RIDER
