"""ε of a run from the round loop's ledger dict; the sealed ledger.json; the privacy statement."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedguard.privacy.accountants import PldAccountant, RdpAccountant
from fedguard.privacy.budget import (
    RunLedgers,
    epsilon_by_round,
    epsilon_of_ledger,
    has_events,
    headline_epsilon,
    ledger_report,
    run_ledgers,
)
from fedguard.privacy.events import ClientEvent, Composed, Gaussian, Sampled, sampled_gaussian
from fedguard.privacy.ledger import (
    LedgerError,
    read_run_ledger,
    seal_run_ledger,
    write_run_ledger,
)
from fedguard.privacy.statement import privacy_statement

POISSON = {
    "scheme": "poisson",
    "rate": 0.1,
    "expected_cohort": 2.0,
    "population": 20,
    "neighbouring_relation": "add_remove",
}
FIXED = {
    "scheme": "without_replacement",
    "rate": 0.1,
    "expected_cohort": 2.0,
    "population": 20,
    "neighbouring_relation": "replace_one",
}
CENTRAL = Sampled(0.1, Gaussian(1.2))
DP_SGD = Composed((Sampled(0.05, Gaussian(1.0)),), count=20)


def run_ledger(rounds: int = 4, record_level: bool = True) -> dict:
    """What the round loop writes: the central event for everyone, DP-SGD for trained clients."""
    entries = []
    for t in range(1, rounds + 1):
        clients = {}
        if record_level:
            for cid in (t % 3, 5):
                clients[str(cid)] = [ClientEvent(cid, DP_SGD, level="record").to_dict()]
        entries.append({"round": t, "population": [CENTRAL.to_dict()], "clients": clients})
    return {"sampling": POISSON, "delta": 1e-5, "rounds": entries}


def test_levels_are_split_and_headline_is_client_level() -> None:
    ledger = json.loads(json.dumps(run_ledger()))
    split = run_ledgers(ledger)
    assert set(split) == {"client", "record"}
    assert split["client"].population_event() == Composed((CENTRAL,), count=4)
    assert split["record"].client_event(5) == Composed(DP_SGD.events, count=80)
    assert split["record"].unit.level == "record" and split["client"].unit.relation == "add_remove"
    expected = RdpAccountant().epsilon(sampled_gaussian(0.1, 1.2, 4), 1e-5)
    assert epsilon_of_ledger(ledger, 1e-5) == pytest.approx(expected, rel=1e-12)
    pld = epsilon_of_ledger(ledger, 1e-5, accountant=PldAccountant())
    assert pld == pytest.approx(PldAccountant().epsilon(sampled_gaussian(0.1, 1.2, 4), 1e-5))
    curve = epsilon_by_round(ledger, 1e-5)
    assert [t for t, _ in curve] == [1, 2, 3, 4] and curve[-1][1] == pytest.approx(expected)


def test_run_ledgers_kept_up_to_date_parse_each_round_once(monkeypatch) -> None:
    """``stop_at_epsilon`` asks for ε after every round: the incremental ledgers give the ε of
    a whole parse at every length, parse each round once, and start over when the rounds given
    are not an extension of those seen."""
    import fedguard.privacy.budget as budget

    full = run_ledger(rounds=6)
    parsed: list[int] = []
    split = budget._split
    monkeypatch.setattr(budget, "_split", lambda data: (parsed.append(1), split(data))[1])
    growing = {"sampling": POISSON, "rounds": []}
    kept = RunLedgers(growing)
    for entry in full["rounds"]:
        growing["rounds"].append(entry)
        incremental = headline_epsilon(kept.update(growing), 1e-5)
        assert incremental == epsilon_of_ledger(dict(growing, rounds=list(growing["rounds"])), 1e-5)
    events_per_round = 3  # the central event and two clients' DP-SGD
    whole_parses = sum(events_per_round * t for t in range(1, 7))  # the checks above
    assert len(parsed) == whole_parses + 6 * events_per_round
    other = run_ledger(rounds=2, record_level=False)
    assert headline_epsilon(kept.update(other), 1e-5) == epsilon_of_ledger(other, 1e-5)
    assert set(kept.levels) == {"client"}


def test_record_level_only_and_no_events() -> None:
    ledger = run_ledger()
    for entry in ledger["rounds"]:
        entry["population"] = []
    worst = RdpAccountant().epsilon(Composed((DP_SGD,), count=4), 1e-5)  # client 5, every round
    assert epsilon_of_ledger(ledger, 1e-5) == pytest.approx(worst, rel=1e-12)
    empty = {"sampling": POISSON, "rounds": [{"round": 1, "population": [], "clients": {}}]}
    assert not has_events(empty) and has_events(ledger)
    assert epsilon_of_ledger(empty, 1e-5) == math.inf


def test_report_names_unsupported_accountants() -> None:
    ledger = run_ledger(record_level=False)
    ledger["sampling"] = FIXED
    for entry in ledger["rounds"]:
        entry["population"] = [Sampled(0.1, Gaussian(1.2), scheme="fixed", population=20).to_dict()]
    report = json.loads(json.dumps(ledger_report(ledger, 1e-5)))
    client = report["levels"]["client"]["accountants"]
    assert "without replacement" in client["pld"]["unsupported"]
    assert "without replacement" in client["prv"]["unsupported"]
    assert report["accountant"] == "rdp" and report["epsilon"] == client["rdp"]["epsilon"]
    assert report["levels"]["client"]["unit"]["relation"] == "replace_one"


def test_bad_ledger_dicts_are_ledger_errors() -> None:
    with pytest.raises(LedgerError, match="invalid privacy event"):
        epsilon_of_ledger(
            {
                "rounds": [
                    {"round": 1, "population": [{"type": "gaussian", "noise_multiplier": -1}]}
                ]
            },
            1e-5,
        )
    with pytest.raises(LedgerError, match="level"):
        run_ledgers(
            {
                "rounds": [
                    {"round": 1, "population": [{**Gaussian(1.0).to_dict(), "level": "device"}]}
                ]
            }
        )


def test_sealed_run_ledger(tmp_path: Path) -> None:
    ledger = run_ledger()
    path = write_run_ledger(tmp_path / "ledger.json", ledger)
    assert read_run_ledger(path) == json.loads(json.dumps(ledger))
    assert "checksum" in json.loads(path.read_text())
    text = path.read_text()
    path.write_text(text.replace('"noise_multiplier": 1.2', '"noise_multiplier": 2.4', 1))
    with pytest.raises(LedgerError, match="checksum does not match"):
        read_run_ledger(path)
    path.write_text(text[:-40])
    with pytest.raises(LedgerError, match="truncated"):
        read_run_ledger(path)
    path.write_text(json.dumps(ledger))
    with pytest.raises(LedgerError, match="no SHA-256 checksum"):
        read_run_ledger(path)
    sealed = seal_run_ledger(ledger)
    assert seal_run_ledger(sealed) == sealed  # re-sealing ignores the old checksum


def spec(target: float | None = None, secure_rng: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        privacy=SimpleNamespace(delta=1e-5, target_epsilon=target, secure_rng=secure_rng),
        defense=SimpleNamespace(transport=SimpleNamespace(name="plain")),
    )


def test_privacy_statement() -> None:
    ledger = run_ledger()
    st = json.loads(json.dumps(privacy_statement(ledger, spec(target=1.0))))
    eps = epsilon_of_ledger(ledger, 1e-5)
    assert st["epsilon"] == pytest.approx(eps) and st["delta"] == 1e-5
    assert st["unit"].startswith("client") and st["neighbouring_relation"] == "add/remove one"
    assert st["trust_model"].startswith("central") and st["sampling"] == "Poisson, rate 0.1"
    assert st["accountant"] == "rdp" and st["accountant_settings"]["name"] == "rdp"
    assert len(st["epsilon_by_round"]["rdp"]) == 4 and st["epsilon_by_round"]["rdp"][
        -1
    ] == pytest.approx(eps)
    assert len(st["epsilon_by_round"]["pld"]) == 4
    assert st["within_budget"] == (eps <= 1.0) and "budget" in st["verdict"]
    assert any("simulation" in n for n in st["notes"]) and any(
        "Record-level" in n for n in st["notes"]
    )
    assert set(st["levels"]) == {"client", "record"}
    quiet = privacy_statement(ledger, spec(secure_rng=True))
    assert quiet["verdict"] is None and not any("simulation" in n for n in quiet["notes"])
    none = privacy_statement({"rounds": []}, spec(target=1.0))
    assert none["epsilon"] == math.inf and none["within_budget"] is False
