"""A finished DP-FedAvg run (6 rounds, z = 1) shared by the evidence tests, and a CLI helper."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.faults.forgery import make_run
from fedguard.cli.main import main


@pytest.fixture(scope="session")
def honest_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("evidence"))


@pytest.fixture
def run_copy(honest_run: Path, tmp_path: Path) -> Path:
    """A private copy of the honest run, free to forge."""
    copy = tmp_path / "run"
    shutil.copytree(honest_run, copy)
    return copy


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "keys"
    monkeypatch.setenv("FEDGUARD_KEY_DIR", str(folder))
    return folder


CLI = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    """``fedguard ARGS`` in this process: (exit status, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["fedguard", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return call
