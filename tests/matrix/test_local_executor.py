"""The local executor: this process computes cells next to its pool, every cell exactly once,
with the same result wherever it ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedguard.matrix import executors
from fedguard.matrix.executors import run_local
from fedguard.matrix.runner import plan_matrix
from fedguard.matrix.store import cell_key

BASE = {
    "name": "t",
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "logreg"},
    "clients": {"n_clients": 6},
    "training": {"batch_size": 32, "learning_rate": 0.1},
}


def _jobs(tmp_path: Path) -> list[tuple[str, dict]]:
    import yaml

    path = tmp_path / "m.yaml"
    cfg = {"name": "m", "base": BASE, "n_malicious": 1, "attacks": ["sign_flip", "gaussian"]}
    path.write_text(yaml.safe_dump({**cfg, "defenses": ["median"], "seeds": [0, 1]}))
    plan = plan_matrix(path)
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
