"""A run on disk.

``spec.yaml`` (canonical spec), ``env.json``, ``partition.json``, ``rounds.jsonl`` (one record per
completed round), ``ledger.json`` (privacy events), ``state.pt`` (everything a resume needs),
``model.pt`` (final flat parameters + layout, loaded with ``weights_only=True``), optional
``updates/`` (owner-only: the per-client updates DP and secure aggregation exist to protect) and
``complete.json``, written last: a run without it is interrupted and can be resumed.
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
from fedguard.privacy.ledger import write_run_ledger
from fedguard.storage import atomic

COMPLETE = "complete.json"
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

    def rounds(self) -> list[dict[str, Any]]:
        f = self.path / "rounds.jsonl"
        if not f.is_file():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def summary(self) -> dict[str, Any]:
        f = self.path / COMPLETE
        return json.loads(f.read_text()) if f.is_file() else {}

    def ledger(self) -> dict[str, Any]:
        from fedguard.privacy.ledger import read_run_ledger

        f = self.path / "ledger.json"
        return read_run_ledger(f) if f.is_file() else {"rounds": []}

    def load_state(self) -> dict[str, Any]:
        return torch.load(self.path / "state.pt", weights_only=True)

    def load_model(self) -> dict[str, Any]:
        """``{"params": flat tensor, "names": [...], "shapes": [...]}`` — no pickle execution."""
        return torch.load(self.path / "model.pt", weights_only=True)

    def update_files(self) -> list[Path]:
        d = self.path / "updates"
        return sorted(d.glob("round_*.pt")) if d.is_dir() else []

    def load_updates(self, round_file: Path) -> dict[str, torch.Tensor]:
        return torch.load(round_file, weights_only=True)

    # ------------------------------------------------------------- writing
    def start(self, spec: RunSpec, partition: list[dict]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path / "spec.yaml", yaml.safe_dump(spec.canonical(), sort_keys=True))
        atomic.write_json(self.path / "env.json", environment())
        atomic.write_json(self.path / "partition.json", partition)

    def checkpoint(self, records: list[dict], ledger: dict, state: dict[str, Any]) -> None:
        """Persist a completed round: state first, then the records that refer to it."""
        atomic.write_torch(self.path / "state.pt", state)
        write_run_ledger(self.path / "ledger.json", ledger)
        atomic.write_text(
            self.path / "rounds.jsonl",
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in records),
        )

    def save_updates(self, round_number: int, payload: dict[str, torch.Tensor]) -> None:
        d = self.path / "updates"
        d.mkdir(mode=OWNER_ONLY_DIR, exist_ok=True)
        os.chmod(d, OWNER_ONLY_DIR)
        atomic.write_torch(d / f"round_{round_number:05d}.pt", payload, mode=OWNER_ONLY_FILE)

    def finish(self, model: dict[str, Any], summary: dict[str, Any]) -> None:
        atomic.write_torch(self.path / "model.pt", model)
        atomic.write_json(self.path / COMPLETE, summary)
