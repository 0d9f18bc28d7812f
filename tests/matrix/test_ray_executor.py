"""The Ray executor against a real local Ray instance started by the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.store import ResultStore

from .test_matrix import BASE

ray = pytest.importorskip("ray", reason="the ray extra is part of the dev install")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    exe = shutil.which("ray")
    assert exe, "the ray CLI comes with the dev extra"
    port = _free_port()
    subprocess.run(
        [
            exe,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([exe, "stop", "--force"], capture_output=True, timeout=120)


def test_matrix_on_ray_cluster(tmp_path: Path, ray_cluster: str) -> None:
    cfg = {
        "name": "ray",
        "base": BASE,
        "n_malicious": 2,
        "seeds": [0],
        "attacks": ["sign_flip"],
        "defenses": ["median"],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    summary = run_matrix(plan_matrix(path), out, workers=2, executor="ray", address=ray_cluster)
    assert summary["ran"] == 4
    rows = ResultStore(out / "results.sqlite").rows()
    assert {r["status"] for r in rows} == {"done"}
    assert all(r["metrics"]["test_accuracy"] > 0 for r in rows)
