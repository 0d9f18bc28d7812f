from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import RdpAccountant
from fedguard.privacy.events import Composed, Gaussian, PrivacyUnit, Sampled
from fedguard.privacy.ledger import LedgerError, PrivacyLedger, load_ledgers, save_ledgers

POP = Sampled(0.1, Gaussian(1.2))


def make_ledger() -> PrivacyLedger:
    ledger = PrivacyLedger(PrivacyUnit("client", "add_remove"), population_size=100)
    for t in range(5):
        clients = {3: [Gaussian(4.0)]} if t % 2 == 0 else {}
        ledger.append(t, population=[POP], clients=clients)
    ledger.append(4, clients={7: [Gaussian(2.0)]})  # same round: merged
    return ledger


def test_composed_events_per_client_and_population() -> None:
    ledger = make_ledger()
    assert [r.round for r in ledger.rounds] == [0, 1, 2, 3, 4]
    assert ledger.client_ids() == (3, 7)
    assert ledger.population_event() == Composed((POP,), count=5)
    assert ledger.client_event(3) == Composed(
        (Composed((POP,), count=5), Composed((Gaussian(4.0),), count=3))
    )
    assert ledger.client_event(7, up_to_round=3) == Composed((POP,), count=4)
    assert ledger.population_event(up_to_round=1) == Composed((POP,), count=2)


def test_epsilon_is_the_worst_client() -> None:
    ledger = make_ledger()
    acc = RdpAccountant()
    summary = ledger.epsilon(acc, 1e-5)
    pop = acc.epsilon(Composed((POP,), count=5), 1e-5)
    c3 = acc.epsilon(
        Composed((Composed((POP,), count=5), Composed((Gaussian(4.0),), count=3))), 1e-5
    )
    c7 = acc.epsilon(Composed((Composed((POP,), count=5), Gaussian(2.0))), 1e-5)
    assert summary.population_epsilon == pop
    assert dict(summary.per_client) == {3: c3, 7: c7}
    assert summary.epsilon == max(pop, c3, c7) > pop
    curve = ledger.epsilon_by_round(acc, 1e-5)
    assert [t for t, _ in curve] == [0, 1, 2, 3, 4]
    assert all(a[1] < b[1] for a, b in itertools.pairwise(curve))
    assert curve[-1][1] == summary.epsilon
    assert json.loads(json.dumps(summary.to_dict()))["settings"]["name"] == "rdp"


def test_save_load_round_trip(tmp_path: Path) -> None:
    ledger = make_ledger()
    record = PrivacyLedger(PrivacyUnit("record", "add_remove"), metadata={"mechanism": "dp_sgd"})
    record.append(0, clients={1: [Sampled(0.05, Gaussian(1.0))]})
    path = save_ledgers(tmp_path / "run" / "ledger.json", [ledger, record])
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.json"]  # no temp left
    back = load_ledgers(path)
    assert [b.to_dict() for b in back] == [ledger.to_dict(), record.to_dict()]
    ledger.save(tmp_path / "one.json")
    assert PrivacyLedger.load(tmp_path / "one.json").to_dict() == ledger.to_dict()
    with pytest.raises(LedgerError, match="2 ledgers"):
        PrivacyLedger.load(path)


def test_tampering_and_truncation_are_detected(tmp_path: Path) -> None:
    path = make_ledger().save(tmp_path / "ledger.json")
    text = path.read_text()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(text.replace('"noise_multiplier": 1.2', '"noise_multiplier": 12.0'))
    assert tampered.read_text() != text
    with pytest.raises(LedgerError, match="checksum does not match"):
        load_ledgers(tampered)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(LedgerError, match="truncated"):
        load_ledgers(truncated)
    with pytest.raises(LedgerError, match="does not exist"):
        load_ledgers(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(LedgerError, match="not a fedguard privacy ledger"):
        load_ledgers(other)


def test_relation_mismatch_and_order_are_refused() -> None:
    ledger = PrivacyLedger(PrivacyUnit("client", "add_remove"))
    with pytest.raises(ConfigError, match="replace_one"):
        ledger.append(0, population=[Sampled(0.1, Gaussian(1.0), scheme="fixed", population=10)])
    fixed = PrivacyLedger(PrivacyUnit("client", "replace_one"))
    fixed.append(0, population=[Sampled(0.1, Gaussian(1.0), scheme="fixed", population=10)])
    with pytest.raises(ConfigError, match="add_remove"):
        fixed.append(1, population=[POP])
    ledger.append(3, population=[POP])
    with pytest.raises(ConfigError, match="round"):
        ledger.append(2, population=[POP])
    with pytest.raises(ConfigError, match="PrivacyEvent"):
        ledger.append(4, population=[{"type": "gaussian"}])  # type: ignore[list-item]
