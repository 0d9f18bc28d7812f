"""The malicious-server attacks through real runs: the broadcast stage sends the imprint, the
clients train honestly, secure aggregation hides all but the sum, and the attack still recovers
samples; the model commitment aborts the inconsistent round; client checks refuse the models."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fedguard.config import parse_spec
from fedguard.launch import build_simulation

BASE: dict[str, Any] = {
    "rounds": 2,
    "model": {"name": "mlp", "hidden": [128]},
    "clients": {"n_clients": 100, "sampling": "fixed", "cohort_size": 10, "weighting": "uniform"},
    "training": {"algorithm": "fedsgd", "learning_rate": 0.1},
}


def _run(attack: str, defense: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    spec = dict(
        BASE,
        attack={"privacy_attacks": [{"name": attack, "params": {"at_round": 1}}]},
        defense=defense,
    )
    sim = build_simulation(parse_spec(spec))
    state = sim.initial_state()
    records = []
    for _ in range(sim.spec.rounds):
        state, out = sim.run_round(state)
        records.append(out.record)
    truth = sim.truth()
    scores = [a.metrics(o, truth) for _, a, o in sim.privacy_outputs if o is not None]
    return records, scores


def test_robbing_the_fed_through_secagg_plus_in_a_run() -> None:
    records, scores = _run("robbing_the_fed", {"transport": "secagg_plus"})
    assert len(scores) == 1  # round 1 only
    (score,) = scores
    expected = score["expected_recovered"]  # birthday bound: N = 126 samples, 128 bins
    assert score["n_samples"] == 126 and math.isclose(expected, 126 * (127 / 128) ** 125)
    assert 0.5 * expected <= score["n_recovered"] <= expected + 4 * math.sqrt(expected)
    assert score["recovered_psnr_median_db"] >= 60.0  # exact up to fixed-point rounding
    assert records[1]["broadcast_imprint_rows"] == 128 and "aborted" not in records[1]


def test_model_inconsistency_in_a_run_and_the_commitment_that_stops_it() -> None:
    _, scores = _run("model_inconsistency", {"transport": "secagg"})
    (score,) = scores
    assert score["n_samples"] >= 10 and score["n_recovered"] >= score["n_samples"] // 2
    records, scores = _run(
        "model_inconsistency",
        {"transport": {"name": "secagg", "params": {"model_commitment": True}}},
    )
    assert scores == []  # the round was aborted: the server saw nothing
    assert "received different models" in records[1]["aborted"]
    assert "aborted" not in records[0]  # the honest round before it completed


def test_client_checks_refuse_the_imprint_and_pass_the_honest_round() -> None:
    records, scores = _run(
        "trap_weights", {"client_checks": ["parameter_statistics", "model_jump"]}
    )
    assert records[0]["broadcast_alarms"] == []
    assert len(records[1]["broadcast_alarms"]) == 10 and scores == []


def test_incompatible_setups_are_refused_before_training() -> None:
    from fedguard.components import build_components
    from fedguard.errors import IncompatibleError

    for change, message in (
        ({"training": {"algorithm": "fedavg"}}, "training.algorithm: fedsgd"),
        ({"model": {"name": "cnn"}}, "model.name: mlp"),
        ({"model": {"name": "mlp", "activation": "tanh"}}, "model.activation: relu"),
    ):
        spec = parse_spec({**BASE, **change, "attack": {"privacy_attacks": ["robbing_the_fed"]}})
        with pytest.raises(IncompatibleError, match=message):
            build_components(spec)
