"""Make the DP components findable before the lead reinstalls fedguard.

The registry reads installed entry points. This fixture writes a throw-away ``.dist-info`` with
*this checkout's* ``pyproject.toml`` entry points (only the DP ones, so nothing else shadows) and
puts it on ``sys.path`` and ``PYTHONPATH`` (for CLI subprocesses). Once fedguard is reinstalled
the same names resolve to the same classes, so the fixture is harmless.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest

from fedguard import registry

ROOT = Path(__file__).resolve().parents[2]


def _dp_entry_points() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines: list[str] = []
    for group, eps in data["project"]["entry-points"].items():
        mine = {k: v for k, v in eps.items() if v.startswith("defenses.dp.")}
        if mine:
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in mine.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def dp_entry_points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("dp_site")
    info = site / "fedguard_dp_mechanisms-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fedguard-dp-mechanisms\nVersion: 0.0\n"
    )
    (info / "entry_points.txt").write_text(_dp_entry_points())
    sys.path.insert(0, str(site))
    paths = [str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    registry._entry_points.cache_clear()
    return site
