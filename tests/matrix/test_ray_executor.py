"""The Ray executor against a real local Ray instance started by the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
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
    """A real Ray head on a free local port, in its own process group: stopping it never touches
    any other Ray instance on the machine (unlike ``ray stop``)."""
    exe = shutil.which("ray")
    assert exe, "the ray CLI comes with the dev extra"
    port = _free_port()
    # no token authentication between this test's head and its client (a token left in ~/.ray by
    # another Ray session on the machine must not make them disagree)
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen(
        [
            exe,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, "ray start exited early"
                assert time.monotonic() < deadline, "the Ray head did not come up in 120 s"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
