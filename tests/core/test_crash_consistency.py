"""Crash at any write point of a DP + momentum + poisoning + privacy-attack run, resume, and get
the same records, ledger, ε, attack results, model and saved updates — or a clear refusal.

On the old layout (``state.pt``, then the whole ``ledger.json``, then the whole ``rounds.jsonl``)
a crash between the first two renames resumed with a round missing from the ledger (ε 8.23
instead of 8.98, exit 0), a deleted ledger resumed from nothing, and privacy-attack results of
rounds before the crash were lost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from crash_harness import (
    WritePoint,
    committed,
    crash_at,
    crash_spec,
    resume,
    same,
    write_points,
)

from fedguard.errors import UserError
from fedguard.privacy.ledger import LedgerError
from fedguard.storage.run_dir import RunDirectory
from fedguard.storage.run_journal import ResumeRefused


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[WritePoint], dict[str, Any]]:
    directory = tmp_path_factory.mktemp("reference") / "run"
    points = write_points(crash_spec(), directory)
    return points, committed(directory)


def _trials(points: list[WritePoint]) -> list[tuple[int, bool]]:
    out = []
    for p in points:
        out.append((p.index, False))
        if p.tears:
            out.append((p.index, True))
    return out


def _crash_resume_compare(
    tmp_path: Path, reference: tuple[list[WritePoint], dict[str, Any]], point: int, tear: bool
) -> None:
    points, expected = reference
    directory = tmp_path / "run"
    assert crash_at(crash_spec(), directory, point, tear), f"no crash at {points[point]}"
    outcome = resume(crash_spec(), directory)
    assert outcome in ("resumed", "complete"), f"{points[point]} (tear={tear}): {outcome}"
    assert same(expected, committed(directory)) == [], f"{points[point]} (tear={tear})"


def test_the_run_has_every_kind_of_write(
    reference: tuple[list[WritePoint], dict[str, Any]],
) -> None:
    points, expected = reference
    files = {p.file for p in points}
    assert {"rounds.jsonl", "ledger.jsonl", "state.pt", "complete.json", "model.pt"} <= files
    assert any(f.startswith("updates/") for f in files)
    assert expected["artifacts"]  # the attack's output, written during round 2
    assert expected["privacy_attacks"] and expected["epsilon"] > 0
    assert len(expected["ledger"]["rounds"]) == 3


def _sample(points: list[WritePoint]) -> list[tuple[int, bool]]:
    """Every point of the second round's commit (records, ledger, state; torn and clean) and of
    the attack's artifact, plus the first and last points: the CI sample."""
    second = [p for p in points if "round_00002" in p.file]
    start = second[0].index
    window = [p for p in points if start <= p.index < start + 14]
    chosen = [points[0], *window, points[-1]]
    return _trials(chosen)


def test_crash_at_each_write_of_a_round_resumes_identical(
    tmp_path: Path, reference: tuple[list[WritePoint], dict[str, Any]]
) -> None:
    for index, tear in _sample(reference[0]):
        _crash_resume_compare(tmp_path / f"{index}-{tear}", reference, index, tear)


@pytest.mark.slow
def test_crash_at_every_write_point_resumes_identical(
    tmp_path: Path, reference: tuple[list[WritePoint], dict[str, Any]]
) -> None:
    for index, tear in _trials(reference[0]):
        _crash_resume_compare(tmp_path / f"{index}-{tear}", reference, index, tear)


def _interrupted(tmp_path: Path) -> Path:
    """A run killed right after committing round 2 of 3 (before round 3's first write)."""
    directory = tmp_path / "run"
    points = write_points(crash_spec(), tmp_path / "count")
    third = next(p for p in points if "round_00003" in p.file)
    assert crash_at(crash_spec(), directory, third.index, tear=False)
    return directory


def test_a_deleted_ledger_is_never_resumed_over(tmp_path: Path) -> None:
    directory = _interrupted(tmp_path)
    (directory / "ledger.jsonl").unlink()
    with pytest.raises(ResumeRefused, match="ledger"):
        resume_or_raise(directory)


def test_a_short_ledger_is_refused(tmp_path: Path) -> None:
    directory = _interrupted(tmp_path)
    ledger = directory / "ledger.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:-1]))  # drop round 2's spending
    with pytest.raises(ResumeRefused, match="shorter than the rounds committed"):
        resume_or_raise(directory)


def test_short_records_are_refused(tmp_path: Path) -> None:
    directory = _interrupted(tmp_path)
    records = directory / "rounds.jsonl"
    records.write_bytes(records.read_bytes().splitlines(keepends=True)[0])
    with pytest.raises(ResumeRefused, match="shorter than the rounds committed"):
        resume_or_raise(directory)


def test_an_edited_spec_is_refused(tmp_path: Path) -> None:
    directory = _interrupted(tmp_path)
    spec_file = directory / "spec.yaml"
    data = yaml.safe_load(spec_file.read_text())
    data["defense"]["server_transforms"][0]["params"]["noise_multiplier"] = 10.0
    spec_file.write_text(yaml.safe_dump(data))
    # refused when the folder's spec is read (the ledger header's hash), before the journals
    with pytest.raises(UserError, match="changed after the run started"):
        resume_or_raise(directory)


def test_a_damaged_state_is_refused(tmp_path: Path) -> None:
    directory = _interrupted(tmp_path)
    state = directory / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ResumeRefused, match="state.pt cannot be read"):
        resume_or_raise(directory)


def test_an_interrupted_run_reads_only_its_committed_rounds(tmp_path: Path) -> None:
    """Appended but uncommitted bytes (a crash inside round 3's commit) are not reported."""
    directory = tmp_path / "run"
    points = write_points(crash_spec(), tmp_path / "count")
    appended = [p for p in points if p.file == "ledger.jsonl" and p.name == "append:after"]
    assert crash_at(crash_spec(), directory, appended[2].index, tear=False)
    run = RunDirectory(directory)
    assert len((directory / "rounds.jsonl").read_text().splitlines()) == 3  # appended
    assert len(run.rounds()) == 2 and len(run.ledger()["rounds"]) == 2  # committed


def test_a_tampered_ledger_line_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_points(crash_spec(), directory)  # a complete run
    ledger = directory / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["population"][0]["event"]["noise_multiplier"] = 10.0
    lines[1] = json.dumps(entry) + "\n"
    ledger.write_text("".join(lines))
    with pytest.raises(LedgerError, match="line 2"):
        RunDirectory(directory).ledger()


def test_resume_from_the_cli_refuses_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedguard.cli.main import main

    directory = _interrupted(tmp_path)
    (directory / "ledger.jsonl").unlink()
    monkeypatch.setattr(sys, "argv", ["fedguard", "run", "--resume", str(directory)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err.lower() and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def resume_or_raise(directory: Path) -> None:
    """Resume as ``fedguard run --resume`` does: with the folder's own spec.yaml."""
    from fedguard.launch import execute

    execute(RunDirectory(directory).spec(), directory, resume=True)


def test_a_state_without_journal_sizes_is_refused(tmp_path: Path) -> None:
    """A folder from a fedguard before the journals: its ledger cannot be checked → refused."""
    import torch

    directory = _interrupted(tmp_path)
    state = torch.load(directory / "state.pt", weights_only=True)
    del state["journal"]
    torch.save(state, directory / "state.pt")
    with pytest.raises(ResumeRefused, match="without crash-consistent journals"):
        resume_or_raise(directory)
