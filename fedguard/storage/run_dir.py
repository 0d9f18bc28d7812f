"""A run on disk.

``spec.yaml`` (canonical spec), ``env.json``, ``partition.json``, ``rounds.jsonl`` (one record per
committed round, append-only), ``ledger.jsonl`` (privacy events, one hash-chained line per round,
append-only; see :mod:`fedguard.privacy.ledger_journal`), ``state.pt`` (everything a resume needs,
and the committed sizes of the two journals: replacing it is a round's single commit point),
``model.pt`` (final flat parameters + layout, loaded with ``weights_only=True``), optional
``updates/`` (owner-only: the per-client updates DP and secure aggregation exist to protect),
``artifacts/`` and ``complete.json``, written last: a run without it is interrupted and can be
resumed. Runs written by fedguard before the journal (``ledger.json``, sealed whole) stay readable.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fedguard import __version__
from fedguard.config import RunSpec, parse_spec
from fedguard.errors import UserError
from fedguard.privacy.ledger_journal import JOURNAL_NAME
from fedguard.storage import atomic

COMPLETE = "complete.json"
RECORDS = "rounds.jsonl"
STATE = "state.pt"
LEGACY_LEDGER = "ledger.json"
OWNER_ONLY_DIR = 0o700
OWNER_ONLY_FILE = 0o600


def environment() -> dict[str, Any]:
    return {
        "fedguard": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    # ------------------------------------------------------------- reading
    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE).is_file()

    def exists(self) -> bool:
        return (self.path / "spec.yaml").is_file()

    def spec(self) -> RunSpec:
        f = self.path / "spec.yaml"
        if not f.is_file():
            raise UserError(f"{self.path} is not a fedguard run directory (no spec.yaml).")
        return parse_spec(yaml.safe_load(f.read_text()))

    def committed(self) -> dict[str, Any] | None:
        """The journal sizes committed by the last ``state.pt`` of an interrupted run (bytes of
        ``rounds.jsonl`` and ``ledger.jsonl`` that belong to committed rounds), or ``None`` for a
        complete run, a run with no committed round, or a ``state.pt`` that cannot be read."""
        if self.complete or not (self.path / STATE).is_file():
            return None
        try:
            journal = self.load_state().get("journal")
        except Exception:  # a damaged state.pt: readers fall back to whole files
            return None
        return journal if isinstance(journal, dict) else None

    def rounds(self) -> list[dict[str, Any]]:
        f = self.path / RECORDS
        if not f.is_file():
            return []
        committed = self.committed()
        data = f.read_bytes()
        if committed is not None:
            data = data[: int(committed["rounds_bytes"])]
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def summary(self) -> dict[str, Any]:
        f = self.path / COMPLETE
        return json.loads(f.read_text()) if f.is_file() else {}

    def has_ledger(self) -> bool:
        return (self.path / JOURNAL_NAME).is_file() or (self.path / LEGACY_LEDGER).is_file()

    def ledger(self) -> dict[str, Any]:
        """The run's ledger dict (``sampling``, ``delta``, ``rounds``), every chain link or the
        legacy checksum verified; of an interrupted run, its committed rounds only."""
        from fedguard.privacy.ledger import read_run_ledger
        from fedguard.privacy.ledger_journal import read_journal

        journal = self.path / JOURNAL_NAME
        if journal.is_file():
            committed = self.committed()
            size = None if committed is None else int(committed["ledger_bytes"])
            return read_journal(journal, size)
        legacy = self.path / LEGACY_LEDGER
        return read_run_ledger(legacy) if legacy.is_file() else {"rounds": []}

    def load_state(self) -> dict[str, Any]:
        return torch.load(self.path / STATE, weights_only=True)

    def load_model(self) -> dict[str, Any]:
        """``{"params": flat tensor, "names": [...], "shapes": [...]}`` — no pickle execution."""
        return torch.load(self.path / "model.pt", weights_only=True)

    def update_files(self) -> list[Path]:
        d = self.path / "updates"
        return sorted(d.glob("round_*.pt")) if d.is_dir() else []

    def load_updates(self, round_file: Path) -> dict[str, torch.Tensor]:
        return torch.load(round_file, weights_only=True)

    # ------------------------------------------------------------- writing
    def start(self, spec: RunSpec, partition: list[dict], sampling: dict[str, Any]) -> str:
        """Create the run's files (empty journals); returns the ledger chain's head."""
        from fedguard.privacy.ledger_journal import header_line

        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path / "spec.yaml", yaml.safe_dump(spec.canonical(), sort_keys=True))
        atomic.write_json(self.path / "env.json", environment())
        atomic.write_json(self.path / "partition.json", partition)
        atomic.write_bytes(self.path / RECORDS, b"")
        header, head = header_line(sampling, spec.privacy.delta, spec.spec_hash())
        atomic.write_bytes(self.path / JOURNAL_NAME, header)
        return head

    def save_updates(self, round_number: int, payload: dict[str, torch.Tensor]) -> None:
        d = self.path / "updates"
        d.mkdir(mode=OWNER_ONLY_DIR, exist_ok=True)
        os.chmod(d, OWNER_ONLY_DIR)
        atomic.write_torch(d / f"round_{round_number:05d}.pt", payload, mode=OWNER_ONLY_FILE)

    def finish(self, model: dict[str, Any], summary: dict[str, Any]) -> None:
        atomic.write_torch(self.path / "model.pt", model)
        atomic.write_json(self.path / COMPLETE, summary)
