"""Imports point down only: cli → orchestration → registry → plugins → core → accounting.

The order is DESIGN.md's, with no exception: every import counts, at module level or inside a
function. The core knows the run's schema (:mod:`fedguard.spec`) and the built components' type
(:mod:`fedguard.core.built_components`); the registry layer (:mod:`fedguard.config`,
:mod:`fedguard.components`, :mod:`fedguard.launch`) parses user input, builds plugins and hands
the core a ready :class:`~fedguard.core.simulation.Simulation`, and gives a spec the component
defaults it hashes with. Valuation, which trains coalitions of a run, sits beside the audit.
``fedguard.errors`` and the atomic file writes are foundations every layer may use. The checker is
also run on planted violations, so it can fail.
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
    (
        "orchestration",
        ("fedguard.matrix", "fedguard.report", "fedguard.audit", "fedguard.valuation"),
    ),
    (
        "registry",
        ("fedguard.registry", "fedguard.components", "fedguard.config", "fedguard.launch"),
    ),
    ("plugins", ("fedguard.attacks", "fedguard.defenses")),
    (
        "core",
        (
            "fedguard",
            "fedguard.api",
            "fedguard.types",
            "fedguard.core",
            "fedguard.data",
            "fedguard.models",
            "fedguard.spec",
            "fedguard.storage",
            "fedguard.rng",
            "fedguard.metrics",
        ),
    ),
    ("accounting", ("fedguard.privacy",)),
    ("foundation", ("fedguard.errors", "fedguard.storage.atomic")),
)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[1]
            ):
                best = (index, len(prefix))
    return None if best is None else best[0]


def imported(source: str, runtime_only: bool = False, module: str = "") -> Iterable[list[str]]:
    """Per import statement, the modules it may import (``from a import b``: ``a`` and ``a.b``,
    since ``from fedguard import registry`` imports the module ``fedguard.registry``).
    ``runtime_only`` skips imports under ``if TYPE_CHECKING:`` (they never execute). Relative
    imports are resolved against ``module`` (a package's ``__init__`` is named as the package)."""
    tree = ast.parse(source)
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = _resolve_relative(module, node.level, node.module)
            yield [base, *(f"{base}.{alias.name}" for alias in node.names)]


#: modules that are packages (their ``__init__``), for resolving relative imports
_PACKAGES: set[str] = set()


def _resolve_relative(module: str, level: int, name: str | None) -> str:
    package = module if module in _PACKAGES else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def violations(modules: dict[str, str]) -> list[str]:
    """``module -> source`` of a tree → every upward import, as "a (layer) imports b (layer)"."""
    found = []
    for module, source in sorted(modules.items()):
        mine = layer_of(module)
        if mine is None:
            continue
        for statement in imported(source, module=module):
            for target in statement:
                theirs = layer_of(target)
                if theirs is None or theirs >= mine:
                    continue
                found.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
                break  # one finding per statement
    return found


#: source folder → the package it installs as (the plugins install under the namespace)
FOLDERS = {"fedguard": "fedguard", "attacks": "fedguard.attacks", "defenses": "fedguard.defenses"}


def project_modules() -> dict[str, str]:
    out = {}
    for folder, package in FOLDERS.items():
        for file in (ROOT / folder).rglob("*.py"):
            parts = file.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            if file.name == "__init__.py":
                name = name.removesuffix(".__init__")
                _PACKAGES.add(name)
            out[name] = file.read_text()
    return out


def test_imports_point_down_only() -> None:
    assert violations(project_modules()) == []


def test_the_checker_catches_planted_upward_imports() -> None:
    modules = project_modules()
    planted = {
        "fedguard.core.simulation": "from fedguard.defenses.robust.krum import Krum\n",
        "fedguard.privacy.ledger": "def f():\n    from fedguard.storage.run_dir import X\n",
        "fedguard.attacks.poisoning.alie": "import fedguard.registry\n",  # plugin → registry
        "fedguard.defenses.robust.krum": "from fedguard import registry\n",  # the from-form too
        "fedguard.defenses.robust.median": "from ...cli import main\n",  # relative, upward
        "fedguard.report.html": "from fedguard.cli.main import app\n",  # orchestration → cli
        "fedguard.storage.run_dir": "from fedguard.config import parse_spec\n",  # core → registry
        "fedguard.core.runner": "from fedguard.launch import build_simulation\n",
    }
    for module, source in planted.items():
        found = violations({**modules, module: modules[module] + source})
        assert len(found) == 1 and found[0].startswith(module), (module, found)


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """Module → the project modules it imports at run time (module level or in a function):
    ``from a import b`` counts as ``a.b`` where that is a module, else as ``a``."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in modules.items():
        for base, *names in imported(source, runtime_only=True, module=module):
            targets = [n for n in names if n in modules]
            if not targets:
                parts = base.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                targets = [".".join(parts)] if parts else []
            graph[module].update(t for t in targets if t != module)
    return graph


def import_cycles(modules: dict[str, str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph = import_graph(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or through others, at module level or
    inside a function (imports under ``TYPE_CHECKING`` never run and do not count)."""
    assert import_cycles(project_modules()) == []


def test_the_cycle_checker_catches_planted_cycles() -> None:
    modules = project_modules()
    planted = {  # each closes a loop with an import the target already has
        "fedguard.config": "def f():\n    from fedguard.components import Components\n",
        "fedguard.report.section": "from fedguard.report import builder\n",
        "fedguard.privacy.events": "def f():\n    import fedguard.privacy.budget\n",
    }
    for module, source in planted.items():
        found = import_cycles({**modules, module: modules[module] + source})
        assert any(module in group for group in found), (module, found)
    guarded = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fedguard.components\n"
    )
    assert import_cycles({**modules, "fedguard.config": modules["fedguard.config"] + guarded}) == []


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
