"""The matrix command's own work: this process computes cells next to its pool (every cell
exactly once, the same result wherever it ran), and the terminal table reuses the tables the run
just computed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

from fedguard.matrix import executors
from fedguard.matrix.executors import run_local
from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.show import show_matrix
from fedguard.matrix.store import cell_key
from fedguard.matrix.summary import MatrixTables

BASE = {
    "name": "t",
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "logreg"},
    "clients": {"n_clients": 6},
    "training": {"batch_size": 32, "learning_rate": 0.1},
}


def _config(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "m.yaml"
    cfg = {"name": "m", "base": BASE, "n_malicious": 1, "attacks": ["sign_flip", "gaussian"]}
    path.write_text(yaml.safe_dump({**cfg, "defenses": ["median"], "seeds": [0, 1]}))
    return path


def _jobs(tmp_path: Path) -> list[tuple[str, dict]]:
    plan = plan_matrix(_config(tmp_path))
    return [(cell_key(c.key), c.spec.model_dump(mode="json")) for c in plan.cells]


def _results(stream) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, result in stream:
        assert key not in out  # every cell exactly once
        assert result["status"] == "done", result.get("error")
        out[key] = {k: v for k, v in result["metrics"].items() if "seconds" not in k}
    return out


def test_this_process_runs_cells_next_to_the_pool_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _jobs(tmp_path)
    here: list[str] = []
    run_here = executors._run_here

    def spy(spec: dict) -> dict:  # the cells this process ran
        here.append(spec["seed"])
        return run_here(spec)

    monkeypatch.setenv("FEDGUARD_THREADS", "1")
    threads = torch.get_num_threads()
    alone = _results(run_local(jobs, 1))
    monkeypatch.setattr(executors, "_run_here", spy)
    shared = _results(run_local(jobs, 2))
    assert shared == alone  # same cells, same metrics bit for bit, wherever they ran
    # the last cell is queued behind what one spawning worker can take (2 s to import torch)
    assert len(here) >= 1
    assert torch.get_num_threads() == threads  # its own thread setting is restored


def test_terminal_table_from_the_runs_tables_equals_the_one_read_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_matrix(plan_matrix(_config(tmp_path)), out, workers=1)

    def shown(tables: MatrixTables | None) -> str:
        buf = io.StringIO()
        show_matrix(out, Console(file=buf, width=120, color_system=None), None, tables)
        return buf.getvalue()

    assert isinstance(summary["tables"], MatrixTables)
    read_back = shown(None)
    assert "median" in read_back and "sign_flip" in read_back
    assert shown(summary["tables"]) == read_back
