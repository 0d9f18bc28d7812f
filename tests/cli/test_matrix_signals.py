"""Matrix runs under Ctrl-C, SIGKILL and a second invocation (issue 14 item 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedguard.errors import UserError
from fedguard.matrix.lock import LOCK_FILE, matrix_lock
from fedguard.matrix.runner import drain


def test_second_matrix_on_the_same_folder_is_refused_with_the_pid(tmp_path: Path) -> None:
    with matrix_lock(tmp_path), pytest.raises(UserError, match=f"PID {os.getpid()}"):
        with matrix_lock(tmp_path):
            pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(f"{dead.pid}\n")
    with matrix_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_cli_second_matrix_exits_2(tmp_path: Path, capsys) -> None:
    import yaml

    from fedguard.cli.main import run_cli

    config = tmp_path / "m.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "locked",
                "base": {"model": "logreg", "clients": {"n_clients": 6}},
                "rounds": 1,
                "n_malicious": 1,
                "attacks": [],
                "defenses": [],
            }
        )
    )
    out = tmp_path / "out"
    with matrix_lock(out):
        status = run_cli(["matrix", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"PID {os.getpid()}" in lines[0]


def _executor(results: list[tuple[str, dict[str, Any]]], interrupt_after: int, held: int):
    """A fake executor: yields ``interrupt_after`` results, then is interrupted while ``held``
    more have finished in its workers (and must still be handed over)."""

    def stream() -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            yield from results[:interrupt_after]
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            yield from results[interrupt_after : interrupt_after + held]
            raise

    return stream()


@pytest.mark.parametrize("where", ["executor", "consumer"])
def test_interrupt_stores_finished_in_flight_cells(where: str) -> None:
    results = [(f"k{i}", {"status": "done"}) for i in range(6)]
    stored: list[str] = []

    if where == "executor":  # Ctrl-C arrives while the executor waits for workers
        stream = _executor(results, interrupt_after=2, held=2)

        def record(key: str, result: dict[str, Any]) -> None:
            stored.append(key)

    else:  # Ctrl-C arrives while a result is being handled; the executor holds two more

        def stream_fn() -> Iterator[tuple[str, dict[str, Any]]]:
            try:
                yield from results[:2]
                yield results[2]
            except KeyboardInterrupt:
                yield from results[3:5]
                raise

        stream = stream_fn()

        def record(key: str, result: dict[str, Any]) -> None:
            stored.append(key)
            if key == "k1":
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drain(stream, record)
    # executor: k2, k3 had finished in the workers when Ctrl-C came; consumer: k1 was being
    # stored, k3 and k4 had finished (k2 was still running and is re-run on resume)
    expected = ["k0", "k1", "k2", "k3"] if where == "executor" else ["k0", "k1", "k3", "k4"]
    assert stored == expected


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from fedguard.matrix.executors import init_local_worker

    def pid_then_sleep(_):
        print(os.getpid(), flush=True)
        time.sleep(60)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"),
                                   initializer=init_local_worker, initargs=(os.getpid(),))
        futures = [pool.submit(pid_then_sleep, k) for k in range(2)]
        time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split()[2] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to inspect processes")
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert parent.stdout is not None
    workers = [int(parent.stdout.readline()) for _ in range(2)]
    assert all(_alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.slow
def test_ctrl_c_on_matrix_with_workers(tmp_path: Path) -> None:
    """End to end: SIGINT to `fedguard matrix --workers 2` exits 130 with the resume hint, keeps
    every finished cell, leaves no worker behind; running it again finishes the rest."""
    import sqlite3

    import yaml

    config = tmp_path / "m.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "sigint",
                "base": {"model": "logreg", "clients": {"n_clients": 6}},
                "rounds": 2,
                "n_malicious": 1,
                "attacks": ["sign_flip", "gaussian"],
                "defenses": ["median", "trimmed_mean"],
                "seeds": [0, 1, 2],
            }
        )
    )
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "fedguard.cli.main", "matrix", str(config), "--out", str(out)]
    proc = subprocess.Popen(
        [*argv, "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def stored() -> int:
        try:
            with sqlite3.connect(out / "results.sqlite") as conn:
                return int(conn.execute("SELECT count(*) FROM cells").fetchone()[0])
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while stored() < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    children = [
        int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    ]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted — finished cells are stored" in err and "Traceback" not in err
    time.sleep(1)
    assert not any(_alive(pid) for pid in children)
    kept = stored()
    assert kept >= 2
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{kept} already finished" in again.stdout
