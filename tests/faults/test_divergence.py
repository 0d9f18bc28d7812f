"""Numeric faults are named: a non-finite or overflowing aggregate/model ends the round as
``diverged``, the run stops with one sentence, a matrix cell is stored ``diverged``."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

from fedguard.cli.main import run_cli
from fedguard.config import parse_spec
from fedguard.launch import build_simulation, execute
from fedguard.types import AggregationResult

# two malicious clients send their update × 10³⁷: every row is finite, the model is not usable
OVERFLOW = {
    "name": "overflow",
    "rounds": 3,
    "model": "logreg",
    "clients": {"n_clients": 6},
    "attack": {"n_malicious": 2, "model_attack": {"name": "sign_flip", "magnitude": 1e37}},
}


def test_overflowing_attack_stops_the_run_as_diverged(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(OVERFLOW))
    out = tmp_path / "run"
    status = run_cli(["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "diverged in round 1" in lines[0], err
    assert "Traceback" not in err
    # the run is finished (not resumable forever) and says why
    assert run_cli(["run", "--resume", str(out)]) == 2


def test_diverged_round_keeps_the_last_finite_model() -> None:
    result = execute(parse_spec(OVERFLOW))
    assert len(result.records) == 1
    last = result.records[-1]
    assert last["diverged"].startswith("training diverged in round 1")
    assert math.isfinite(last["test_loss"])  # the kept model is the initial one
    assert torch.isfinite(result.simulation.initial_state().params).all()
    assert result.summary["diverged"] == last["diverged"]


def test_infinite_aggregate_does_not_blame_clients(monkeypatch) -> None:
    """An aggregate overflowing to inf ends the round as diverged; no client is recorded faulty
    (before: the next round dropped every honest client as "non-finite")."""
    spec = parse_spec({"name": "inf", "rounds": 2, "model": "logreg", "clients": {"n_clients": 4}})
    sim = build_simulation(spec)
    real = sim.aggregator

    def overflowing(updates, weights, ctx):
        result = real(updates, weights, ctx)
        return AggregationResult(torch.full_like(result.aggregate, float("inf")))

    monkeypatch.setattr(sim, "aggregator", overflowing)
    result = execute(spec, simulation=sim)
    assert len(result.records) == 1
    record = result.records[0]
    assert "aggregate is inf/NaN" in record["diverged"]
    assert record.get("faulty", []) == [] and record.get("flagged", []) == []


def test_every_client_non_finite_is_diverged_not_a_crash() -> None:
    spec = parse_spec(
        {
            "name": "lr",
            "rounds": 2,
            "model": "logreg",
            "clients": {"n_clients": 4},
            "training": {"learning_rate": 1e38},
        }
    )
    result = execute(spec)
    assert "diverged" in result.records[-1]
    assert len(result.records) == 1


def test_matrix_cell_is_stored_diverged(tmp_path: Path) -> None:
    from fedguard.matrix.cell import run_cell
    from fedguard.matrix.store import ResultStore

    outcome = run_cell(parse_spec(OVERFLOW).model_dump(mode="json"))
    assert outcome["status"] == "diverged"
    assert "diverged in round 1" in outcome["error"]
    store = ResultStore(tmp_path / "results.sqlite")
    cell = {"attack": "sign_flip", "defense": "mean", "seed": 0, "axes": [], "spec": {}}
    store.put("k", cell, outcome["status"], metrics=outcome["metrics"], error=outcome["error"])
    assert store.rows()[0]["status"] == "diverged"
    assert store.finished_keys() == {"k"}  # a diverged cell is an answer: not run again
    store.close()


def test_tidy_frame_exposes_the_status() -> None:
    from fedguard.matrix.summary import tidy_frame

    row = {
        "key": "k",
        "attack": "sign_flip",
        "defense": "mean",
        "seed": 0,
        "axes": [],
        "status": "diverged",
        "metrics": {"test_accuracy": 0.1},
        "records": [],
        "error": "training diverged in round 1",
        "seconds": 1.0,
    }
    tidy = tidy_frame([row])
    assert set(tidy.status) == {"diverged"}
