"""One torch thread per process by default (--threads / FEDGUARD_THREADS, recorded in env.json),
matrix workers defaulting to the usable cores, and a progress bar with a known total."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedguard.errors import UserError
from fedguard.threads import THREADS_ENV, requested_threads, usable_cores

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "rounds": 1,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": "logreg",
    "clients": {"n_clients": 6},
}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fedguard.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full,
        timeout=300,
    )


def test_requested_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert requested_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert requested_threads() == 3
    assert requested_threads(2) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(UserError, match="FEDGUARD_THREADS"):
            requested_threads()
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [((), {}, 1), ((), {THREADS_ENV: "2"}, 2)],
)
def test_run_records_its_torch_threads(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: int
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "threads", **BASE}))
    proc = cli(*args, "run", str(cfg), "--out", str(tmp_path / "r"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r" / "env.json").read_text())["threads"] == expected


@pytest.mark.parametrize(("args", "env"), [(("--threads", "0"), {}), ((), {THREADS_ENV: "zero"})])
def test_bad_threads_is_one_sentence_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "threads", **BASE}))
    proc = cli(*args, "run", str(cfg), "--out", str(tmp_path / "r"), env=env)
    assert proc.returncode == 2
    assert "--threads (or FEDGUARD_THREADS)" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_matrix_defaults_to_usable_cores_and_counts_to_a_known_total(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"name": "w", "base": BASE, "n_malicious": 1, "attacks": ["sign_flip"], "seeds": [0]}
        )
    )
    proc = cli("matrix", str(cfg), "--out", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr
    assert f"{usable_cores()} worker(s), 1 torch thread(s) each" in " ".join(proc.stdout.split())
    assert "2/2" in proc.stdout and "/?" not in proc.stdout
    assert (tmp_path / "m" / "verdicts.csv").is_file()
