"""Hostile-folder section: each planted case (script in the run name, symlinked or ``..``
artifacts, ANSI/OSC escape codes, rich markup) against ``show`` and ``report``; every case
must be inert (nothing interpreted, nothing from outside the folder embedded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.faults.corruption import invoke
from benchmarks.faults.folders import make_run
from benchmarks.faults.hostile_cases import (
    CASES,
    HOSTILE_SPEC,
    HostileCase,
    inert_html,
    inert_terminal,
    planted,
)


def check(source: Path, case: HostileCase, workdir: Path) -> tuple[bool, str]:
    """(inert, what went wrong) for one planted case."""
    run, _ = planted(source, case, workdir)
    problems = []
    for argv in (["show", str(run), "--partition"], ["report", str(run)]):
        _status, out, err, tb = invoke(argv)
        if tb is not None:
            problems.append(f"{argv[0]}: traceback {tb.splitlines()[-1]}")
        if not inert_terminal(out + err):
            problems.append(f"{argv[0]}: control characters reached the terminal")
    report = run / "report.html"
    if report.exists() and not inert_html(report.read_text()):
        problems.append("report: planted markup or an outside file in the page")
    if case.kind == "refused" and report.exists():
        problems.append("report: written although the folder should be refused")
    return not problems, "; ".join(problems)


def section(root: Path) -> dict[str, Any]:
    source = make_run(root / "hostile-source", HOSTILE_SPEC)
    results = [(case.name, *check(source, case, root / "hostile")) for case in CASES]
    return {
        "cases": len(results),
        "inert": sum(ok for _, ok, _ in results),
        "failures": [(name, why) for name, ok, why in results if not ok],
    }
