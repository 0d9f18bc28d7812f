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

import hashlib
import io
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from fedguard import __version__
from fedguard.errors import UserError
from fedguard.privacy.ledger_journal import JOURNAL_NAME, chain
from fedguard.spec import RunSpec, canonical_json
from fedguard.storage import atomic

COMPLETE = "complete.json"
RECORDS = "rounds.jsonl"
STATE = "state.pt"
LEGACY_LEDGER = "ledger.json"
OWNER_ONLY_DIR = 0o700
OWNER_ONLY_FILE = 0o600


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, short (for a one-sentence error)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:120].rstrip(".") or type(exc).__name__


def spec_file_hash(data: Any, version: Any) -> str:
    """``RunSpec.spec_hash`` of a loaded ``spec.yaml`` under the fedguard ``version`` that wrote
    it. It catches damage and accidental edits only: anyone can recompute it."""
    payload = canonical_json({"spec": data, "version": version})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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
    #: the journal sizes of ``state.pt`` by its (inode, mtime, size): the records and the
    #: ledger both need them, and a large run's state.pt is slow to load twice
    _committed: dict[tuple[int, int, int], dict[str, Any] | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    # ------------------------------------------------------------- reading
    # Every read names the file and what is wrong with it in one sentence (a UserError): a run
    # folder may be truncated by a full disk, damaged in transfer or edited by hand.
    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE).is_file()

    def exists(self) -> bool:
        return (self.path / "spec.yaml").is_file()

    def spec(self) -> RunSpec:
        f = self.path / "spec.yaml"
        if not f.is_file():
            raise UserError(f"{self.path} is not a fedguard run directory (no spec.yaml).")
        data = self._yaml(f)
        try:
            # written canonical (defaults filled in): it hashes without asking the registry
            spec = RunSpec.from_canonical(data)
        except UserError as exc:
            raise UserError(f"{f} is not a valid run spec: {exc}") from None
        if self.complete:
            self._check_spec_hash(data)
        elif spec.canonical() != data:
            raise UserError(
                f"{f} is incomplete or edited: it is not the canonical spec fedguard wrote "
                "(keys missing or added)."
            )
        else:
            self._check_started_spec_hash(data)
        return spec

    def _check_started_spec_hash(self, data: Any) -> None:
        """An interrupted run has no ``complete.json``; its ledger's header line, written (and
        chained) when the run started, records the spec's hash instead. A value deleted from a
        component's parameters still reads as canonical, so only the hash catches it."""
        started = self._started_spec_hash()
        if started is None:
            return  # no ledger header yet (or a damaged one, which reading the ledger reports)
        actual = spec_file_hash(data, self.environment_info().get("fedguard"))
        if actual != started:
            raise UserError(
                f"{self.path / 'spec.yaml'} was changed after the run started (hash {actual}, "
                f"the ledger's header records {started}); it was edited or damaged."
            )

    def _started_spec_hash(self) -> str | None:
        try:
            with open(self.path / JOURNAL_NAME, "rb") as fh:
                header = json.loads(fh.readline())
            body = {k: v for k, v in header.items() if k != "chain"}
            if chain("", body) != header.get("chain"):
                return None
        except (OSError, ValueError, AttributeError, TypeError):
            return None
        started = body.get("spec_hash")
        return started if isinstance(started, str) else None

    def _check_spec_hash(self, data: Any) -> None:
        """A finished run records its spec's hash: the spec.yaml beside it must hash the same,
        with the fedguard version that wrote it (so a newer fedguard still reads old runs)."""
        recorded = self.summary().get("spec_hash")
        actual = spec_file_hash(data, self.environment_info().get("fedguard"))
        if recorded != actual:
            raise UserError(
                f"{self.path / 'spec.yaml'} does not match the run (hash {actual}, "
                f"{COMPLETE} records {recorded}); it was edited or damaged."
            )

    def committed(self) -> dict[str, Any] | None:
        """The journal sizes committed by the last ``state.pt`` of an interrupted run (bytes of
        ``rounds.jsonl`` and ``ledger.jsonl`` that belong to committed rounds), or ``None`` for a
        complete run, a run with no committed round, or a ``state.pt`` that cannot be read."""
        if self.complete:
            return None
        try:
            stat = (self.path / STATE).stat()
        except OSError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key not in self._committed:
            try:
                journal = self.load_state().get("journal")
            except Exception:  # a damaged state.pt: readers fall back to whole files
                journal = None
            self._committed.clear()
            self._committed[key] = journal if isinstance(journal, dict) else None
        return self._committed[key]

    def rounds(self) -> list[dict[str, Any]]:
        """Per-round records, checked: one JSON object per line, rounds numbered 1, 2, …, of an
        interrupted run the committed ones only, and in a finished run as many as it completed."""
        f = self.path / RECORDS
        if not f.is_file():
            if self.complete:
                raise UserError(f"{f} is missing; the run's per-round records are gone.")
            return []
        committed = self.committed()
        data = self._bytes(f)
        if committed is not None:
            data = data[: int(committed["rounds_bytes"])]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{f} is not UTF-8 text (damaged or not fedguard's).") from None
        records: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise UserError(f"{f} line {number} is not a JSON record (truncated?).") from None
            if not isinstance(record, dict) or record.get("round") != len(records) + 1:
                raise UserError(f"{f} line {number} is not the record of round {len(records) + 1}.")
            records.append(record)
        if self.complete:
            expected = self.summary().get("rounds_completed")
            if expected != len(records):
                raise UserError(
                    f"{f} holds {len(records)} rounds but {COMPLETE} says {expected} completed; "
                    "the records were truncated or edited."
                )
        return records

    def summary(self) -> dict[str, Any]:
        f = self.path / COMPLETE
        if not f.is_file():
            return {}
        data = self._json(f)
        if not isinstance(data, dict):
            raise UserError(f"{f} is not a JSON object.")
        return data

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
        if legacy.is_file():
            return read_run_ledger(legacy)
        if self.complete or (self.path / RECORDS).is_file():
            # every run writes its ledger, DP or not: its absence is damage, and reading it as
            # "no mechanism ran" would understate the privacy spent
            raise UserError(
                f"{journal} is missing although the run started; the privacy spent cannot be known."
            )
        return {"rounds": []}

    def partition(self) -> list[dict[str, Any]]:
        """Samples and label histogram per client (written when the run starts)."""
        f = self.path / "partition.json"
        if not f.is_file():
            raise UserError(f"{f} is missing; it is written when a run starts.")
        data = self._json(f)
        ok = isinstance(data, list) and all(
            isinstance(p, dict)
            and isinstance(p.get("samples"), int)
            and isinstance(p.get("labels"), list)
            for p in data
        )
        if not ok:
            raise UserError(f"{f} is not a list of clients with samples and labels.")
        return data  # type: ignore[no-any-return]

    def environment_info(self) -> dict[str, Any]:
        """The environment the run started in (``env.json``)."""
        f = self.path / "env.json"
        if not f.is_file():
            raise UserError(f"{f} is missing; it is written when a run starts.")
        data = self._json(f)
        if not isinstance(data, dict):
            raise UserError(f"{f} is not a JSON object.")
        return data

    def load_state(self) -> dict[str, Any]:
        return self._torch(self.path / STATE)

    def load_model(self) -> dict[str, Any]:
        """``{"params": flat tensor, "names": [...], "shapes": [...]}`` — no pickle execution."""
        return self._torch(self.path / "model.pt")

    def update_files(self) -> list[Path]:
        """The saved per-round updates, one per round that aggregated updates (an empty Poisson
        cohort or an aborted round saves none): a missing round is refused, since valuing clients
        on the rounds that happen to remain gives silently different values."""
        d = self.path / "updates"
        files = sorted(d.glob("round_*.pt")) if d.is_dir() else []
        if not files:
            return []
        saved = [r["round"] for r in self.rounds() if r.get("clients") and "aborted" not in r]
        missing = [f"round_{k:05d}.pt" for k in saved if d / f"round_{k:05d}.pt" not in files]
        if missing:
            raise UserError(
                f"{d} lacks {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} of the "
                f"{len(saved)} rounds that saved updates; the saved updates are incomplete."
            )
        return files

    def load_updates(self, round_file: Path) -> dict[str, torch.Tensor]:
        data = self._torch(round_file)
        if not isinstance(data, dict):
            raise UserError(f"{round_file} does not hold a round's updates.")
        return data

    def contributions(self) -> Any:
        """The latest ``fedguard contrib`` result (``contributions.csv``) as a DataFrame, or None
        when contrib never ran; one client per row, every client once."""
        import pandas as pd

        f = self.path / "contributions.csv"
        if not f.is_file():
            return None
        try:
            frame = pd.read_csv(io.StringIO(self._text(f)))
        except (ValueError, pd.errors.ParserError) as exc:
            raise UserError(f"{f} is not a readable CSV ({_reason(exc)}).") from None
        n = self.spec().clients.n_clients
        numeric = [c for c in ("value", "lower", "upper") if c in frame.columns]
        ok = (
            "client" in frame.columns
            and sorted(frame["client"].tolist()) == list(range(n))
            and all(pd.api.types.is_numeric_dtype(frame[c]) for c in numeric)
        )
        if ok and {"value", "lower", "upper"} <= set(frame.columns):
            ok = bool(((frame.lower <= frame.value) & (frame.value <= frame.upper)).all())
        if not ok:
            raise UserError(
                f"{f} does not hold one row per client (0..{n - 1}) with lower ≤ value ≤ upper; "
                "run fedguard contrib again."
            )
        return frame

    # ------------------------------------------------------------- decoding helpers
    def _text(self, f: Path) -> str:
        try:
            return f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{f} is not UTF-8 text (damaged or not fedguard's).") from None
        except OSError as exc:
            raise UserError(f"{f} cannot be read ({_reason(exc)}).") from None

    def _bytes(self, f: Path) -> bytes:
        try:
            return f.read_bytes()
        except OSError as exc:
            raise UserError(f"{f} cannot be read ({_reason(exc)}).") from None

    def _json(self, f: Path) -> Any:
        try:
            return json.loads(self._text(f))
        except ValueError as exc:
            raise UserError(f"{f} is not valid JSON ({_reason(exc)}).") from None

    def _yaml(self, f: Path) -> Any:
        try:
            return yaml.safe_load(self._text(f))
        except yaml.YAMLError as exc:
            raise UserError(f"{f} is not valid YAML ({_reason(exc)}).") from None

    def _torch(self, f: Path) -> Any:
        if not f.is_file():
            raise UserError(f"{f} is missing.")
        try:
            # weights_only: a run folder from someone else never executes code
            return torch.load(f, weights_only=True)
        except Exception as exc:  # torch raises many types for damaged archives
            raise UserError(
                f"{f} is not a readable tensor file ({_reason(exc)}); it is truncated, damaged "
                "or not fedguard's."
            ) from None

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
