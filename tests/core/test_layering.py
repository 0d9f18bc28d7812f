"""Imports point down only: cli → orchestration → registry → plugins → core → accounting.

The order is DESIGN.md's. Every import counts, at module level or inside a function. The one
stated exception: core modules may import :mod:`fedguard.config` and :mod:`fedguard.components`,
where the core types ``RunSpec`` and ``Components`` are defined beside their validation through
the registry (splitting them is open work). ``fedguard.errors`` and the atomic file writes are
foundations every layer may use. The checker is also run on planted violations, so it can fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top to bottom; the longest matching prefix decides a module's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("fedguard.cli",)),
    ("orchestration", ("fedguard.matrix", "fedguard.report", "fedguard.audit")),
    ("registry", ("fedguard.registry", "fedguard.components", "fedguard.config")),
    ("plugins", ("attacks", "defenses")),
    (
        "core",
        (
            "fedguard",
            "fedguard.api",
            "fedguard.types",
            "fedguard.core",
            "fedguard.data",
            "fedguard.models",
            "fedguard.valuation",
            "fedguard.storage",
            "fedguard.rng",
            "fedguard.metrics",
        ),
    ),
    ("accounting", ("fedguard.privacy",)),
    ("foundation", ("fedguard.errors", "fedguard.storage.atomic")),
)
CORE_MAY_IMPORT = ("fedguard.config", "fedguard.components")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[1]
            ):
                best = (index, len(prefix))
    return None if best is None else best[0]


def imported(source: str) -> Iterable[list[str]]:
    """Per import statement, the modules it may import (``from a import b``: ``a`` and ``a.b``,
    since ``from fedguard import registry`` imports the module ``fedguard.registry``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]


def violations(modules: dict[str, str]) -> list[str]:
    """``module -> source`` of a tree → every upward import, as "a (layer) imports b (layer)"."""
    found = []
    for module, source in sorted(modules.items()):
        mine = layer_of(module)
        if mine is None:
            continue
        for statement in imported(source):
            for target in statement:
                theirs = layer_of(target)
                if theirs is None or theirs >= mine:
                    continue
                if LAYERS[mine][0] == "core" and target.startswith(CORE_MAY_IMPORT):
                    continue
                found.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
                break  # one finding per statement
    return found


def project_modules() -> dict[str, str]:
    out = {}
    for package in ("fedguard", "attacks", "defenses"):
        for file in (ROOT / package).rglob("*.py"):
            name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = file.read_text()
    return out


def test_imports_point_down_only() -> None:
    assert violations(project_modules()) == []


def test_the_checker_catches_planted_upward_imports() -> None:
    modules = project_modules()
    planted = {
        "fedguard.core.simulation": "from defenses.robust.krum import Krum\n",  # core → plugin
        "fedguard.privacy.ledger": "def f():\n    from fedguard.storage.run_dir import X\n",
        "attacks.poisoning.alie": "import fedguard.registry\n",  # plugin → registry
        "defenses.robust.krum": "from fedguard import registry\n",  # the from-form too
        "fedguard.report.html": "from fedguard.cli.main import app\n",  # orchestration → cli
    }
    for module, source in planted.items():
        found = violations({**modules, module: modules[module] + source})
        assert len(found) == 1 and found[0].startswith(module), (module, found)


def test_the_accounting_package_imports_no_torch() -> None:
    """`fedguard.privacy` (events, ledger, accountants, calibration, audit statistics) loads
    without torch — the leaf the core and audits build on."""
    modules = sorted(name for name in project_modules() if name.startswith("fedguard.privacy"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"
