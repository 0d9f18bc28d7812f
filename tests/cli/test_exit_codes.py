"""Exit statuses: usage errors are one line with status 2 and no traceback (whatever click typer
uses), Ctrl-C exits 130 with how to resume, a command's own status is passed through."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedguard.cli import main as cli_main
from fedguard.config import parse_spec

USAGE_ERRORS = {
    "no arguments": [],
    "no subcommand": ["list"],
    "no keys subcommand": ["keys"],
    "not an integer": ["run", "--rounds", "abc"],
    "unknown option": ["run", "--bogus"],
    "unknown command": ["frobnicate"],
    "missing required option": ["calibrate", "--sampling-rate", "0.1", "--steps", "3"],
    "missing argument": ["show"],
}


def run_main(monkeypatch, argv: list[str]) -> int:
    """``fedguard ARGV`` in-process, as the console script runs it; returns the exit status."""
    monkeypatch.setattr(sys, "argv", ["fedguard", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()
    code = exit_info.value.code
    return code if isinstance(code, int) else (0 if code is None else 1)


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_error_is_one_line_exit_2(case, monkeypatch, capsys) -> None:
    status = run_main(monkeypatch, USAGE_ERRORS[case])
    captured = capsys.readouterr()
    assert status == 2, case
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), captured.err
    assert captured.out == ""


def test_no_arguments_names_the_commands(monkeypatch, capsys) -> None:
    run_main(monkeypatch, [])
    err = capsys.readouterr().err
    assert "run" in err and "matrix" in err and "report" in err


def test_user_error_escapes_markup_and_control_codes(monkeypatch, capsys) -> None:
    status = run_main(monkeypatch, ["show", "/nonexistent/[bold]x\x1b]0;pwned\x07"])
    err = capsys.readouterr().err
    assert status == 2
    assert "\x1b" not in err and "\x07" not in err
    assert "[bold]x" in err  # printed literally, not taken as rich markup


def test_command_status_is_passed_through(monkeypatch) -> None:
    """A command that raises typer.Exit(3) ends with status 3 (the old main returned 0)."""
    import typer

    @cli_main.app.command("exit-three", hidden=True)
    def _exit_three() -> None:
        raise typer.Exit(3)

    try:
        assert run_main(monkeypatch, ["exit-three"]) == 3
    finally:
        cli_main.app.registered_commands.pop()


def _interrupt_after_first_round(monkeypatch) -> None:
    import fedguard.cli.run_command as run_command

    real_execute = run_command.execute

    def execute(spec, out, progress, **kwargs):
        def progress_then_interrupt(done, total, record):
            progress(done, total, record)
            raise KeyboardInterrupt

        return real_execute(spec, out, progress_then_interrupt, **kwargs)

    monkeypatch.setattr(run_command, "execute", execute)


def test_ctrl_c_on_run_exits_130_with_resume_hint(tmp_path: Path, monkeypatch, capsys) -> None:
    import yaml

    config = tmp_path / "c.yaml"
    spec = {"name": "ctrlc", "rounds": 3, "clients": {"n_clients": 4}, "model": "logreg"}
    parse_spec(spec)
    config.write_text(yaml.safe_dump(spec))
    _interrupt_after_first_round(monkeypatch)
    out = tmp_path / "run"
    status = run_main(monkeypatch, ["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 130
    assert "interrupted — " in err and f"fedguard run --resume {out}" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert run_main(monkeypatch, ["run", "--resume", str(out)]) == 0


def test_typer_interrupt_status_is_not_dropped(monkeypatch, capsys) -> None:
    """A KeyboardInterrupt in a command without its own handler still exits 130 (typer returns
    130 instead of raising; the old ``main`` exited 0)."""

    @cli_main.app.command("interrupt-me", hidden=True)
    def _interrupt() -> None:
        raise KeyboardInterrupt

    try:
        assert run_main(monkeypatch, ["interrupt-me"]) == 130
    finally:
        cli_main.app.registered_commands.pop()
    assert "interrupted" in capsys.readouterr().err
