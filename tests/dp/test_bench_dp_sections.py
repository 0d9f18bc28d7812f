"""``benchmarks/bench_dp.py --only`` runs the named sections and no others (it used to append
issue 22's accountant grid and DP-FTRL sections to every run, whatever ``--only`` named)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_only_runs_the_named_section() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_dp.py", "--only", "rqm"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "RQM" in done.stdout
    assert "DP-FTRL" not in done.stdout
    assert "accountants on 100 settings" not in done.stdout
