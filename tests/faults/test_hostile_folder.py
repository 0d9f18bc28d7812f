"""A run folder from someone else: its report and ``show`` output stay inert (issue 14 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults.folders import make_run
from benchmarks.faults.hostile_cases import (
    ANSI_SPEC_NAME,
    CASES,
    HOSTILE_SPEC,
    SCRIPT_NAME,
    inert_html,
    inert_terminal,
    planted,
)
from fedguard.cli.main import run_cli
from fedguard.config import parse_spec
from fedguard.errors import ConfigError


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("hostile") / "run", HOSTILE_SPEC)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_folder_is_inert(case, clean_run: Path, tmp_path: Path, capsys) -> None:
    run, _ = planted(clean_run, case, tmp_path)
    status = run_cli(["show", str(run), "--partition"])
    shown = capsys.readouterr()
    assert inert_terminal(shown.out + shown.err), repr(shown.out + shown.err)
    assert "Traceback" not in shown.err
    report = run / "report.html"
    status_report = run_cli(["report", str(run)])
    reported = capsys.readouterr()
    assert inert_terminal(reported.out + reported.err)
    if case.kind == "markup":
        assert status == 0 and status_report == 0, reported.err
        assert inert_html(report.read_text())
    else:
        assert status_report == 2, reported.out
        lines = [line for line in reported.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), reported.err
        assert not report.exists()


def test_script_name_is_escaped_in_the_report(clean_run: Path, tmp_path: Path) -> None:
    from fedguard.report.builder import build_report

    run, _ = planted(clean_run, CASES[0], tmp_path)
    html = build_report(run)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html


def test_markup_in_summary_is_printed_literally(clean_run: Path, tmp_path: Path, capsys) -> None:
    run, _ = planted(clean_run, CASES[1], tmp_path)
    assert run_cli(["show", str(run)]) == 0
    assert "[blink]loud[/blink]" in capsys.readouterr().out


@pytest.mark.parametrize("name", [ANSI_SPEC_NAME, "tab\there", "bell\x07", "rtl\u202eoverride"])
def test_run_name_must_be_printable(name: str) -> None:
    with pytest.raises(ConfigError, match="printable"):
        parse_spec({"name": name})


def test_ordinary_names_still_valid() -> None:
    assert parse_spec({"name": "quick start é ü 数据"}).name == "quick start é ü 数据"
    assert parse_spec({"name": SCRIPT_NAME}).name == SCRIPT_NAME  # printable: escaped on output
