"""Every corrupt file gives one sentence (exit 2) or a correct answer, never a traceback or a
silently wrong answer, and read-only commands never write (issue 14 item 5).

The grid — {truncate, zero bytes, random bytes, delete} × every file of a run, an interrupted
run and a matrix folder × every command that reads it — lives in
``benchmarks/faults/corruption.py``; CI runs a sample (four cases per folder and command, one
per corruption), the slow test and ``benchmarks/bench_faults.py`` run all of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults.corruption import (
    CORRUPTIONS,
    all_cases,
    baselines,
    build_folders,
    run_case,
    run_grid,
    sample,
)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    folders = build_folders(tmp_path_factory.mktemp("corruption"))
    return folders, baselines(folders)


def test_grid_covers_every_file_of_every_folder(grid) -> None:
    folders, _ = grid
    cases = all_cases(folders)
    for kind in ("run", "interrupted", "matrix"):
        on_disk = {
            str(p.relative_to(folders.of(kind))) for p in folders.of(kind).rglob("*") if p.is_file()
        }
        assert {c.file for c in cases if c.folder == kind} == on_disk
    # the folders hold what the commands read: updates, a ledger, artifacts, contributions
    run_files = {c.file for c in cases if c.folder == "run"}
    assert {"ledger.jsonl", "contributions.csv", "updates/round_00002.pt"} <= run_files
    assert any(f.startswith("artifacts/") for f in run_files)
    assert {c.corruption for c in cases} == set(CORRUPTIONS)


def test_sample_of_the_grid(grid) -> None:
    folders, base = grid
    cases = sample(all_cases(folders))
    failures = [
        (case.label, outcome.kind, outcome.detail)
        for case in cases
        if not (outcome := run_case(case, folders, base)).ok
    ]
    assert failures == []


@pytest.mark.parametrize(
    "file, command",
    [
        ("results.sqlite", "show"),  # 0 bytes: not taken as a new, empty database
        ("updates/round_00002.pt", "contrib"),  # missing: refused, values not silently changed
        ("ledger.jsonl", "report"),  # missing: not "no DP mechanism ran"
    ],
)
def test_issue_cases(grid, file: str, command: str) -> None:
    from benchmarks.faults.corruption import Case

    folders, base = grid
    folder = "matrix" if file == "results.sqlite" else "run"
    for how in ("zero bytes", "delete"):
        outcome = run_case(Case(folder, file, how, command), folders, base)
        assert outcome.kind == "clean", (how, outcome)


@pytest.mark.slow
def test_full_grid(tmp_path: Path) -> None:
    results = run_grid(tmp_path)
    failing = sorted((case.label, o.kind, o.detail) for case, o in results if not o.ok)
    assert failing == []
