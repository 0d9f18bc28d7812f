"""Detection and false-alarm rates of client checks, from round records."""

from __future__ import annotations

import pytest

from fedguard.metrics.broadcast_checks import broadcast_check_metrics


def test_rates_split_modified_and_honest_rounds() -> None:
    records = [
        {"clients": 10, "broadcast_alarms": [3]},  # honest round, one false alarm
        {"clients": 10, "broadcast_alarms": [1, 2, 3, 4], "broadcast_modified": True},
        {"clients": 10, "broadcast_alarms": [], "aborted": "clients 1 and 2 received different"},
        {"clients": 5, "broadcast_alarms": list(range(5)), "broadcast_modified": True},
    ]
    out = broadcast_check_metrics(records)
    assert out["client_alarm_rate"] == pytest.approx(9 / 15)
    assert out["client_false_alarm_rate"] == pytest.approx(1 / 20)
    assert out["modified_rounds"] == 2 and out["aborted_rounds"] == 1
    assert out["blocked_modified_rounds"] == 1  # the last: every sampled client refused


def test_a_modified_round_that_aborted_is_blocked() -> None:
    out = broadcast_check_metrics([{"clients": 10, "broadcast_modified": True, "aborted": "x"}])
    assert out["blocked_modified_rounds"] == 1 and "client_alarm_rate" not in out


def test_runs_without_checks_keep_their_columns() -> None:
    assert broadcast_check_metrics([{"clients": 10}, {"clients": 10}]) == {}
    assert broadcast_check_metrics([{"aborted": "x"}]) == {
        "aborted_rounds": 1.0,
        "modified_rounds": 0.0,
        "blocked_modified_rounds": 0.0,
    }
