"""DP-FTRL in whole runs on the min-separation schedule: the ledger's ε is the mechanism's,
an interrupted run resumes bit for bit, the audit's cross-checks and canaries see the schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from ftrl_spec import ROUNDS, SEPARATION, ftrl_spec

from fedguard.audit.canary_clients import install_canaries
from fedguard.audit.ledger_checks import cross_check, cross_check_data
from fedguard.config import RunSpec
from fedguard.launch import build_simulation, execute
from fedguard.privacy.accountants.analytic import gaussian_epsilon
from fedguard.privacy.budget import epsilon_of_ledger
from fedguard.storage.run_dir import RunDirectory


def make_spec(server: dict[str, Any], **clients: Any) -> RunSpec:
    return ftrl_spec("ftrl-run", server, **clients)


BANDMF = {"name": "bandmf", "bands": SEPARATION, "noise_multiplier": 2.0}
TREE = {"name": "dp_ftrl_tree", "estimator": "honaker", "noise_multiplier": 2.0}


def test_each_round_takes_one_group_and_the_ledger_is_the_mechanisms(one_thread: None) -> None:
    result = execute(make_spec(BANDMF))
    assert [r["clients"] for r in result.records] == [4] * ROUNDS  # 12 clients / 3 groups
    k = math.ceil(ROUNDS / SEPARATION)  # bands ≤ separation: sensitivity √k
    exact = gaussian_epsilon(math.sqrt(k) / 2.0, 1e-5)
    assert epsilon_of_ledger(result.ledger, 1e-5, "pld") == pytest.approx(exact, rel=1e-3)
    assert epsilon_of_ledger(result.ledger, 1e-5, "analytic") == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("server", [BANDMF, TREE], ids=["bandmf", "tree"])
def test_interrupted_run_resumes_bit_for_bit(
    one_thread: None, tmp_path: Path, server: dict[str, Any]
) -> None:
    spec = make_spec(server)
    execute(spec, tmp_path / "full")

    class Interrupted(Exception):
        pass

    def stop_after_four(done: int, total: int, record: dict) -> None:
        if done == 4:  # round 4 committed, the correlated noise state with it
            raise Interrupted

    with pytest.raises(Interrupted):
        execute(spec, tmp_path / "part", progress=stop_after_four)
    execute(spec, tmp_path / "part", resume=True)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["params"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["params"]
    assert torch.equal(a, b)


def test_audit_cross_checks_describe_the_schedule(one_thread: None, tmp_path: Path) -> None:
    # before the fix the audit described the run as 'all clients' (expected cohort 12, not 4)
    execute(make_spec(TREE), tmp_path / "run")
    result = cross_check(RunDirectory(tmp_path / "run"))
    assert result.passed, [c for c in result.failures]


def test_cross_checks_catch_a_cohort_outside_the_schedule(one_thread: None, tmp_path: Path) -> None:
    execute(make_spec(TREE), tmp_path / "run")
    run = RunDirectory(tmp_path / "run")
    records = [dict(r) for r in run.rounds()]
    ok = cross_check_data(run.spec(), records, run.ledger(), run.summary())
    assert ok.passed
    records[1]["clients"] = 5  # group 1 of 3 has 4 of the 12 clients
    bad = cross_check_data(run.spec(), records, run.ledger(), run.summary())
    assert [c.name for c in bad.failures] == ["participants"]
    assert "min-separation schedule" in bad.failures[0].detail


def test_canaries_join_the_schedule(one_thread: None) -> None:
    sim = build_simulation(make_spec(BANDMF, sampling_rate=0.5))
    install_canaries(sim, torch.zeros(6, 10), public_population=12 + 6)
    assert sim.sampling["min_separation"] == SEPARATION
    assert sim.sampling["expected_cohort"] == pytest.approx(0.5 * 18 / SEPARATION)
