"""One accountant's refusal (memory guard, MemoryError) never loses the others' answers.

Issue 13 item 4: PLD at q = 1, z = 0.5, T = 10⁴ raised ``MemoryError`` (3.27 GiB) and
``--accountant all`` printed a traceback, losing the RDP ε already computed.
"""

from __future__ import annotations

import json
import math

import pytest

from fedguard.cli.audit_command import audit_command, epsilon_per_accountant
from fedguard.privacy.accountants import (
    PldAccountant,
    PrvAccountant,
    RdpAccountant,
    UnsupportedEventError,
)
from fedguard.privacy.budget import ledger_report
from fedguard.privacy.events import sampled_gaussian

ISSUE_SETTING = sampled_gaussian(1.0, 0.5, 10_000)  # q = 1, z = 0.5, T = 10⁴
REFERENCE = sampled_gaussian(0.01, 1.1, 1000)


def test_pld_memory_guard_names_the_setting_and_the_memory() -> None:
    # dp-accounting's default grid (1e-4) at the issue's setting: 4.4·10⁸ points. Refused
    # before anything is allocated, as the PRV accountant refuses its oversized grids.
    library_grid = PldAccountant(value_discretization_interval=1e-4)
    with pytest.raises(UnsupportedEventError) as info:
        library_grid.epsilon(ISSUE_SETTING, 1e-5)
    message = str(info.value)
    assert "grid points" in message and "GB" in message
    assert "q = 1" in message and "noise multiplier 0.5" in message and "10000 steps" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    with pytest.raises(UnsupportedEventError, match="grid points"):
        PrvAccountant(max_domain_points=1000).epsilon(REFERENCE, 1e-5)  # the same refusal type


def test_pld_guard_covers_the_self_composition() -> None:
    # one sampled step fits (46 871 points), its 1000-fold composition (~1.7·10⁵) does not
    guarded = PldAccountant(value_discretization_interval=1e-4, max_grid_points=100_000)
    with pytest.raises(UnsupportedEventError, match=r"q = 0\.01, noise multiplier 1\.1"):
        guarded.epsilon(REFERENCE, 1e-5)
    assert PldAccountant(value_discretization_interval=1e-4).epsilon(
        REFERENCE, 1e-5
    ) == pytest.approx(1.5154, abs=5e-5)


def _pld_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: PldAccountant, event: object, delta: float) -> float:
        raise MemoryError("Unable to allocate 3.27 GiB for an array")

    monkeypatch.setattr(PldAccountant, "_epsilon", boom)


def test_calculator_keeps_every_answer_when_one_accountant_runs_out_of_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pld_out_of_memory(monkeypatch)
    per = epsilon_per_accountant(REFERENCE, 1e-5, ("rdp", "prv", "pld"))
    assert per["rdp"]["epsilon"] == pytest.approx(RdpAccountant().epsilon(REFERENCE, 1e-5))
    assert per["prv"]["epsilon"] == pytest.approx(1.5255, abs=5e-5)
    assert per["pld"]["refused"] is True
    assert "pld accountant ran out of memory" in per["pld"]["unsupported"]
    assert "3.27 GiB" in per["pld"]["unsupported"]


def test_calculator_prints_the_refusal_next_to_the_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _pld_out_of_memory(monkeypatch)
    audit_command(
        None, 1e-5, "all", False, 0.01, 1.1, 1000, "poisson", None, False, None, 0.95
    )  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "1.712" in out and "prv: ε = 1.52" in out  # the RDP headline and PRV's answer
    assert "pld refused: the pld accountant ran out of memory" in out


def _ledger() -> dict:
    event = sampled_gaussian(0.01, 1.1, 1).to_dict()
    sampling = {"scheme": "poisson", "rate": 0.01, "neighbouring_relation": "add_remove"}
    rounds = [{"round": t, "population": [event], "clients": {}} for t in range(1, 11)]
    return {"sampling": sampling, "delta": 1e-5, "rounds": rounds}


def test_run_audit_keeps_every_answer_when_one_accountant_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pld_out_of_memory(monkeypatch)
    report = json.loads(json.dumps(ledger_report(_ledger(), 1e-5, ("pld", "rdp", "prv"))))
    entries = report["levels"]["client"]["accountants"]
    assert entries["pld"]["refused"] is True and "out of memory" in entries["pld"]["unsupported"]
    expected = RdpAccountant().epsilon(sampled_gaussian(0.01, 1.1, 10), 1e-5)
    assert entries["rdp"]["epsilon"] == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(entries["prv"]["epsilon"])
    # the headline is the first accountant that answered, not the refused one
    assert report["accountant"] == "rdp" and report["epsilon"] == entries["rdp"]["epsilon"]
