"""The core never imports plugin packages; the only link is the entry-point table."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "fedguard"


def test_core_does_not_import_plugins() -> None:
    offenders = []
    for file in CORE.rglob("*.py"):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{file}: {n}" for n in names if n.split(".")[0] in ("attacks", "defenses")
            ]
    assert offenders == []


def test_layering_check_detects_a_plugin_import(tmp_path: Path) -> None:
    bad = "from defenses.robust.krum import Krum\n"
    tree = ast.parse(bad)
    found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["defenses.robust.krum"]
