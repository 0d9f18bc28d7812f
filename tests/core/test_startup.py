"""Start-up of ``fedguard run``: no SciPy, pandas, matplotlib, scikit-learn or torch._dynamo on
its path, and what it caches per process (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from fedguard.metrics.detection import auroc, average_ranks

HEAVY = ("scipy", "pandas", "matplotlib", "sklearn", "torch._dynamo")


def test_fedguard_run_imports_no_heavy_library(tmp_path: Path) -> None:
    """The whole ``fedguard run`` command (two rounds of the quickstart config) in a fresh
    process: none of the heavy libraries is imported."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['fedguard', 'run', 'configs/quickstart.yaml', '--rounds', '2', "
        f"'--out', {str(tmp_path / 'run')!r}]\n"
        "try:\n"
        "    runpy.run_module('fedguard.cli.main', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "complete.json").exists()
    assert done.stdout.strip().splitlines()[-1] == "heavy:"


def test_average_ranks_equal_scipy_rankdata() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = rng.integers(0, 5, int(rng.integers(1, 40))).astype(np.float64)
        values[rng.random(len(values)) < 0.1] = np.inf
        values[rng.random(len(values)) < 0.1] = -np.inf
        expected = scipy.stats.rankdata(values, method="average")
        assert np.array_equal(average_ranks(values), expected)
    # the AUC it feeds: Mann–Whitney with ties counted one half
    auc = auroc([0.9, 0.5, 0.5, 0.1], [0, 1, 2, 3], [0, 1])
    assert auc == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_digits_are_parsed_once_and_read_only() -> None:
    from fedguard.data.shuffle_split import digits_arrays

    images, target = digits_arrays()
    assert digits_arrays()[0] is images and images.shape == (1797, 8, 8)
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        target[0] = 1


def test_alie_z_loads_scipy_special_only() -> None:
    """Every matrix worker runs ALIE cells: its Φ⁻¹ is scipy.special's ndtri (what
    scipy.stats.norm.ppf evaluates, bit for bit), so scipy.stats is never loaded."""
    from scipy.stats import norm

    from fedguard.attacks.poisoning.alie import alie_z

    for n, f in [(25, 5), (10, 2), (20, 4), (101, 30)]:
        s = n // 2 + 1 - f
        assert alie_z(n, f) == float(norm.ppf((n - s) / n))
    probe = (
        "import sys\nfrom attacks.poisoning.alie import alie_z\nalie_z(20, 4)\n"
        "print('scipy.stats' in sys.modules, 'scipy.special' in sys.modules)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert done.stdout.split() == ["False", "True"]
