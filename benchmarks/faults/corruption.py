"""Corrupt-file grid: {truncate, zero bytes, random bytes, delete} × every file a run or matrix
folder holds (enumerated, not listed) × every command that reads it.

Each case copies a pristine folder, corrupts one file and runs one command in-process
(``fedguard.cli.main.run_cli``: no CLI start-up per case). The outcome must be

- a clean error: exit 2, one line starting ``error:``, no traceback, nothing written; or
- a correct answer: exit 0 and, once paths and timings are masked, the same output as on the
  pristine folder (for ``run --resume`` and ``matrix``: the same final model, records, ledger and
  results as an uncorrupted resume).

Anything else is counted: ``traceback`` (an exception escaped), ``wrong`` (exit 0 with a
different answer), ``wrote`` (a read-only command, or a failing one, changed the folder) or
``unclean`` (a non-zero exit without one clean sentence).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import re
import shutil
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.faults.folders import DP_RUN, make_matrix, make_run, matrix_config

CORRUPTIONS = ("truncate", "zero bytes", "random bytes", "delete")
RUN_COMMANDS = ("show", "audit", "report", "contrib")
RESUME_COMMANDS = ("run --resume",)
MATRIX_COMMANDS = ("show", "report", "matrix resume")
#: The run is interrupted after this many of DP_RUN's rounds for the resume cases.
INTERRUPT_AFTER = 2


@dataclass(frozen=True)
class Case:
    folder: str  # "run", "interrupted" or "matrix"
    file: str  # relative path inside the folder
    corruption: str
    command: str

    @property
    def label(self) -> str:
        return f"{self.command} on {self.folder}/{self.file} ({self.corruption})"


@dataclass(frozen=True)
class Outcome:
    kind: str  # clean | same | traceback | wrong | wrote | unclean
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind in ("clean", "same")


# ---------------------------------------------------------------------------- corruptions


def corrupt(path: Path, how: str, seed: int = 0) -> None:
    if how == "delete":
        path.unlink()
        return
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero bytes":
        path.write_bytes(b"")
    elif how == "random bytes":
        rng = random.Random(f"{seed}:{path.name}")
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(max(len(data), 64))))
    else:
        raise ValueError(how)


def files_of(folder: Path) -> list[str]:
    """Every regular file the folder holds, found by walking it (never a fixed list)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class Folders:
    root: Path
    run: Path
    interrupted: Path
    matrix: Path
    matrix_config: Path

    def of(self, kind: str) -> Path:
        return {"run": self.run, "interrupted": self.interrupted, "matrix": self.matrix}[kind]


def build_folders(root: Path) -> Folders:
    """A complete DP run (with contributions, an audit plot and a report, so that every file
    a run folder can hold is there), the same run interrupted, and a finished tiny matrix."""
    from fedguard.cli.main import run_cli

    run = make_run(root / "pristine" / "run")
    with _quiet():
        assert run_cli(["contrib", str(run)]) == 0
        assert run_cli(["audit", str(run)]) == 0
        assert run_cli(["report", str(run)]) == 0
    interrupted = _interrupted_run(root / "pristine" / "interrupted")
    config = matrix_config(root / "pristine" / "config")
    matrix = make_matrix(root / "pristine" / "matrix", config)
    with _quiet():
        assert run_cli(["report", str(matrix)]) == 0
    return Folders(root, run, interrupted, matrix, config)


def _interrupted_run(out: Path) -> Path:
    from fedguard.config import parse_spec
    from fedguard.launch import execute

    def stop(done: int, total: int, record: dict[str, Any]) -> None:
        if done == INTERRUPT_AFTER:
            raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        execute(parse_spec(DP_RUN), out, stop)
    return out


def all_cases(folders: Folders) -> list[Case]:
    cases = []
    for kind, commands in (
        ("run", RUN_COMMANDS),
        ("interrupted", RESUME_COMMANDS),
        ("matrix", MATRIX_COMMANDS),
    ):
        for file in files_of(folders.of(kind)):
            for how in CORRUPTIONS:
                cases += [Case(kind, file, how, command) for command in commands]
    return cases


# ---------------------------------------------------------------------------- commands


def _argv(command: str, folder: Path, folders: Folders) -> list[str]:
    return {
        "show": ["show", str(folder), "--partition"]
        if (folder / "spec.yaml").exists() or not (folder / "results.sqlite").exists()
        else ["show", str(folder)],
        "audit": ["audit", str(folder), "--json"],
        "report": ["report", str(folder), "--out", str(folder.parent / "report_out.html")],
        "contrib": ["contrib", str(folder), "--json"],
        "run --resume": ["run", "--resume", str(folder)],
        "matrix resume": ["matrix", str(folders.matrix_config), "--out", str(folder)],
    }[command]


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def invoke(argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """(status, stdout, stderr, traceback or None) of ``fedguard ARGV`` run in-process."""
    from fedguard.cli.main import run_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: int | None = run_cli(argv)
            tb = None
        except SystemExit as exc:
            status, tb = (exc.code if isinstance(exc.code, int) else 1), None
        except BaseException:
            status, tb = None, traceback.format_exc()
    return status, out.getvalue(), err.getvalue(), tb


_TIMING = re.compile(
    r'"(seconds|wall_seconds|median_train_seconds|train_seconds|compute_seconds|elapsed'
    r'|generated)"\s*:\s*[^,}\n]+'
)


def _masked(text: str, folder: Path) -> str:
    text = text.replace(str(folder.parent), "ROOT")
    text = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated TIME", text)
    return _TIMING.sub(r'"\1": T', text)


def answer(command: str, folder: Path, stdout: str) -> str:
    """What the command answered, with paths and timings masked."""
    if command == "report":
        return _masked((folder.parent / "report_out.html").read_text(), folder)
    if command == "run --resume":
        return _resume_answer(folder)
    if command == "matrix resume":
        return _matrix_answer(folder)
    return _masked(stdout, folder)


def _resume_answer(folder: Path) -> str:
    import torch

    model = torch.load(folder / "model.pt", weights_only=True)
    records = [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]
    kept = [{k: v for k, v in r.items() if "seconds" not in k} for r in records]
    from fedguard.storage.run_dir import RunDirectory

    ledger = RunDirectory(folder).ledger().get("rounds")
    digest = hashlib.sha256(model["params"].numpy().tobytes()).hexdigest()
    return json.dumps({"model": digest, "records": kept, "ledger": ledger}, sort_keys=True)


def _matrix_answer(folder: Path) -> str:
    import pandas as pd

    frame = pd.read_csv(folder / "matrix.csv")
    frame = frame[~frame.metric.astype(str).str.contains("seconds")]
    return frame.to_csv(index=False)


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file's size and hash (a read-only command must leave this unchanged)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in folder.rglob("*")
        if p.is_file()
    }


# ---------------------------------------------------------------------------- one case

#: Corrupting these leaves a folder that a real run can legitimately be in; the answer for that
#: state (not the pristine answer) is correct. Deleting complete.json = interrupted after its
#: last checkpoint (the marker is written last); `show` must then say it is interrupted.
LEGITIMATE: dict[tuple[str, str, str], Callable[[str], bool]] = {
    # (audit --json states the rounds its ε covers: of an interrupted run, the recorded ones)
    ("run", "complete.json", "delete"): lambda got: (
        "interrupted" in got or '"complete": false' in got or '"rounds_recorded": 3' in got
    ),
    # contrib never ran: the report has no contributions section, which is what that folder holds
    ("run", "contributions.csv", "delete"): lambda got: "Contributions" not in got,
}

READ_ONLY = ("show", "audit", "report")
#: Files a command writes as its output (allowed to change when it succeeds).
OUTPUTS = {
    "audit": ("privacy_epsilon.png",),
    "report": (),
    "show": (),
}


def run_case(case: Case, folders: Folders, baseline: dict[tuple[str, str], str]) -> Outcome:
    pristine = folders.of(case.folder)
    work = folders.root / "cases" / re.sub(r"\W+", "_", case.label)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / pristine.name
    shutil.copytree(pristine, folder, symlinks=True)
    corrupt(folder / case.file, case.corruption)
    before = snapshot(folder)
    status, out, err, tb = invoke(_argv(case.command, folder, folders))
    try:
        if tb is not None:
            return Outcome("traceback", tb.strip().splitlines()[-1])
        if status == 0:
            got = answer(case.command, folder, out)
            legit = LEGITIMATE.get((case.folder, case.file, case.corruption))
            if got == baseline[(case.folder, case.command)] or (legit and legit(got)):
                return _writes(case, folder, before, succeeded=True) or Outcome("same")
            return Outcome("wrong", _first_difference(got, baseline[(case.folder, case.command)]))
        lines = [line for line in err.splitlines() if line.strip()]
        if status == 2 and len(lines) == 1 and lines[0].startswith("error:"):
            return _writes(case, folder, before, succeeded=False) or Outcome("clean", lines[0])
        return Outcome("unclean", f"exit {status}: {err.strip()[:300]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _writes(case: Case, folder: Path, before: dict, succeeded: bool) -> Outcome | None:
    if case.command not in READ_ONLY and succeeded:
        return None  # resume and matrix write by design; contrib writes its results
    after = snapshot(folder)
    allowed = OUTPUTS.get(case.command, ()) if succeeded else ()
    changed = sorted(
        f for f in set(before) | set(after) if before.get(f) != after.get(f) and f not in allowed
    )
    if case.command in ("contrib", "run --resume", "matrix resume") and not succeeded:
        # a refusal must not have touched the folder either
        pass
    return Outcome("wrote", ", ".join(changed)) if changed else None


def _first_difference(got: str, want: str) -> str:
    for k, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"at {k}: got {got[max(0, k - 40) : k + 60]!r} want {want[max(0, k - 40) : k + 60]!r}"
    return f"lengths {len(got)} vs {len(want)}"


def baselines(folders: Folders) -> dict[tuple[str, str], str]:
    """Each command's answer on an uncorrupted copy of each folder."""
    out: dict[tuple[str, str], str] = {}
    for kind, commands in (
        ("run", RUN_COMMANDS),
        ("interrupted", RESUME_COMMANDS),
        ("matrix", MATRIX_COMMANDS),
    ):
        for command in commands:
            work = folders.root / "baseline" / kind / re.sub(r"\W+", "_", command)
            shutil.rmtree(work, ignore_errors=True)
            folder = work / folders.of(kind).name
            shutil.copytree(folders.of(kind), folder, symlinks=True)
            status, stdout, err, tb = invoke(_argv(command, folder, folders))
            if status != 0:
                raise RuntimeError(f"baseline {command} on {kind} failed: {err}{tb or ''}")
            out[(kind, command)] = answer(command, folder, stdout)
    return out


def run_grid(
    root: Path, select: Callable[[list[Case]], list[Case]] | None = None
) -> list[tuple[Case, Outcome]]:
    folders = build_folders(root)
    base = baselines(folders)
    cases = all_cases(folders)
    if select is not None:
        cases = select(cases)
    return [(case, run_case(case, folders, base)) for case in cases]


def sample(cases: list[Case], per_group: int = 4, seed: int = 0) -> list[Case]:
    """A deterministic sample: ``per_group`` cases for each (folder, command), each with another
    corruption and a file drawn at random (the CI share of the grid)."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.folder, case.command), []).append(case)
    picked = []
    for k, key in enumerate(sorted(groups)):
        for j in range(per_group):
            how = CORRUPTIONS[(k + j) % len(CORRUPTIONS)]
            options = [c for c in groups[key] if c.corruption == how and c not in picked]
            picked.append(rng.choice(options))
    return picked


def section(root: Path) -> dict[str, Any]:
    """Benchmark section: the whole grid."""
    results = run_grid(root)
    kinds = Counter(outcome.kind for _, outcome in results)
    bad = [(c.label, o.kind, o.detail) for c, o in results if not o.ok]
    return {
        "cases": len(results),
        "clean errors": kinds["clean"],
        "correct answers": kinds["same"],
        "tracebacks": kinds["traceback"],
        "silently wrong": kinds["wrong"],
        "wrote": kinds["wrote"],
        "unclean exits": kinds["unclean"],
        "failures": bad,
    }
