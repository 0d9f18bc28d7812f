"""Hostile run folders: what a party who shares a run folder can plant in it.

Shared by ``tests/faults/test_hostile_folder.py`` and ``benchmarks/faults/hostile.py``; each
case edits a copy of a real run folder and names what the reader must not suffer.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

SCRIPT_NAME = "<img src=x onerror=alert(1)><svg onload=alert(2)>"
#: escape codes a spec.yaml name can hold (no slashes): clear screen, retitle, bell
ANSI_SPEC_NAME = "run\x1b[2J\x1b]0;pwned\x07"
#: and what other files can hold: an OSC 8 hyperlink to a local file
ANSI_NAME = "run\x1b[2J\x1b]0;pwned\x07\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\"
MARKUP_NAME = "[blink]loud[/blink]"
SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not really\n"
ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


#: The run the cases are planted in: named with a script, as anyone may name a run.
HOSTILE_SPEC = {
    "name": SCRIPT_NAME,
    "rounds": 1,
    "model": "logreg",
    "clients": {"n_clients": 4},
    "training": {"batch_size": 64},
}


@dataclass(frozen=True)
class HostileCase:
    name: str
    plant: Callable[[Path, Path], None]  # (run folder, a folder outside it)
    kind: str  # "markup": the report renders, inert; "refused": one sentence, nothing embedded


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _spec_name(run: Path, name: str) -> None:
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    spec["name"] = name
    (run / "spec.yaml").write_text(yaml.safe_dump(spec))


def _script_in_name(run: Path, outside: Path) -> None:
    # a printable name is valid: the source run is made under it (HOSTILE_SPEC), so its spec
    # hash is genuine; here it is only checked to be there
    assert json.loads((run / "complete.json").read_text())["name"] == SCRIPT_NAME


def _ansi_in_summary(run: Path, outside: Path) -> None:
    _edit_json(run / "complete.json", name=ANSI_NAME, status=MARKUP_NAME)


def _ansi_in_spec_name(run: Path, outside: Path) -> None:
    _spec_name(run, ANSI_SPEC_NAME)


def _symlinked_artifact(run: Path, outside: Path) -> None:
    secret = outside / "id_ed25519.png"
    secret.write_bytes(SECRET)
    (run / "artifacts").mkdir(exist_ok=True)
    (run / "artifacts" / "grid.png").symlink_to(secret)
    _edit_json(run / "complete.json", artifacts={"grid": "artifacts/grid.png"})


def _symlinked_artifact_folder(run: Path, outside: Path) -> None:
    (outside / "grid.png").write_bytes(SECRET)
    (run / "artifacts").symlink_to(outside, target_is_directory=True)
    _edit_json(run / "complete.json", artifacts={"grid": "artifacts/grid.png"})


def _dotdot_artifact(run: Path, outside: Path) -> None:
    (outside / "grid.png").write_bytes(SECRET)
    rel = Path("..") / outside.name / "grid.png"
    _edit_json(run / "complete.json", artifacts={"grid": str(rel)})


def _absolute_artifact(run: Path, outside: Path) -> None:
    (outside / "grid.png").write_bytes(SECRET)
    _edit_json(run / "complete.json", artifacts={"grid": str(outside / "grid.png")})


def _symlinked_env(run: Path, outside: Path) -> None:
    (outside / "env.json").write_text(json.dumps({"secret": SECRET.decode()}))
    (run / "env.json").unlink()
    (run / "env.json").symlink_to(outside / "env.json")


CASES = (
    HostileCase("script in the run name", _script_in_name, "markup"),
    HostileCase("ANSI/OSC codes and markup in the summary", _ansi_in_summary, "markup"),
    HostileCase("ANSI/OSC codes in spec.yaml's name", _ansi_in_spec_name, "refused"),
    HostileCase("artifact symlinked out of the folder", _symlinked_artifact, "refused"),
    HostileCase("artifacts folder symlinked out", _symlinked_artifact_folder, "refused"),
    HostileCase("artifact path with ..", _dotdot_artifact, "refused"),
    HostileCase("absolute artifact path", _absolute_artifact, "refused"),
    HostileCase("env.json symlinked out", _symlinked_env, "refused"),
)


def planted(source: Path, case: HostileCase, workdir: Path) -> tuple[Path, Path]:
    """A copy of the run folder ``source`` with ``case`` planted; returns (run, outside)."""
    root = workdir / case.name.replace(" ", "_").replace("/", "_").replace(".", "_")
    shutil.rmtree(root, ignore_errors=True)
    run, outside = root / "run", root / "outside"
    shutil.copytree(source, run, symlinks=True)
    outside.mkdir(parents=True)
    case.plant(run, outside)
    return run, outside


def inert_terminal(text: str) -> bool:
    """No escape, bell or other control character reaches the terminal (newlines aside)."""
    return not any(not ch.isprintable() and ch not in "\n" for ch in text)


def inert_html(html: str) -> bool:
    """No planted tag or secret in the page."""
    secret64 = base64.b64encode(SECRET).decode()[:24]
    return (
        "<img src=x" not in html
        and "<svg onload" not in html
        and secret64 not in html
        and "OPENSSH" not in html
    )
