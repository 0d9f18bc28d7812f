"""Writing a run crash-consistently: one commit point per round.

A round is committed in three steps:

1. its record is appended to ``rounds.jsonl`` (flushed, fsynced);
2. its privacy events are appended to ``ledger.jsonl`` as one hash-chained line;
3. ``state.pt`` — the model, every component's state, RNG positions *and the byte sizes of both
   journals after the appends plus the ledger chain's head* — replaces the previous one
   atomically. This rename is the commit point.

A crash before step 3 leaves the previous ``state.pt``, whose sizes say where the committed part
of each journal ends: resuming truncates the torn or uncommitted tail and replays the round, which
is deterministic, so records, ledger and ε come out identical. A journal shorter than its
committed size (deleted, truncated), a broken chain, a record count that disagrees with the state,
or a ``spec.yaml`` edited since the run started is refused with one sentence — never resumed over.
Every write costs the same at round 10 and at round 10,000.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from fedguard.errors import UserError
from fedguard.privacy.ledger import LedgerError
from fedguard.privacy.ledger_journal import JOURNAL_NAME, read_journal, round_line
from fedguard.spec import RunSpec
from fedguard.storage import atomic
from fedguard.storage.run_dir import RECORDS, STATE, RunDirectory


class ResumeRefused(UserError):
    """A run folder cannot be resumed without losing or inventing committed rounds."""


@dataclass
class RunJournal:
    """The append position of a run's journals (mutable: it advances with every commit)."""

    directory: RunDirectory
    spec_hash: str
    ledger_head: str
    rounds_bytes: int
    ledger_bytes: int

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls, directory: RunDirectory, spec: RunSpec, partition: list[dict], sampling: dict
    ) -> RunJournal:
        head = directory.start(spec, partition, sampling)
        path = directory.path
        return cls(
            directory,
            spec.spec_hash(),
            head,
            (path / RECORDS).stat().st_size,
            (path / JOURNAL_NAME).stat().st_size,
        )

    @classmethod
    def resume(
        cls, directory: RunDirectory, spec: RunSpec
    ) -> tuple[RunJournal, dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """Check the folder against its last commit and cut the uncommitted tails.

        Returns the journal, the committed state, the committed records and the ledger dict.
        """
        path = directory.path
        try:
            state = directory.load_state()
            committed_round = int(state["round"])
        except Exception as err:
            raise ResumeRefused(
                f"{path / STATE} cannot be read ({type(err).__name__}), so the committed rounds "
                "are unknown; refusing to resume (start the run again in a new folder)."
            ) from err
        journal = state.get("journal")
        if not isinstance(journal, dict):
            raise ResumeRefused(
                f"{path} was written by a fedguard without crash-consistent journals, so its "
                "committed rounds cannot be checked; refusing to resume (start it again)."
            )
        started_with = journal.get("spec_hash")
        if started_with != spec.spec_hash():
            raise ResumeRefused(
                f"{path / 'spec.yaml'} was changed after the run started (spec hash "
                f"{spec.spec_hash()}, started as {started_with}); refusing to resume."
            )
        records = _committed_records(path, int(journal["rounds_bytes"]), committed_round)
        try:
            ledger = read_journal(path / JOURNAL_NAME, int(journal["ledger_bytes"]))
        except LedgerError as err:
            raise ResumeRefused(f"{err} Refusing to resume: ε would be under-reported.") from err
        if ledger.get("head") != journal.get("ledger_head") or len(ledger["rounds"]) != (
            committed_round
        ):
            raise ResumeRefused(
                f"{path / JOURNAL_NAME} does not hold the {committed_round} rounds committed to "
                "it; refusing to resume: ε would be under-reported."
            )
        _truncate(path / RECORDS, int(journal["rounds_bytes"]))
        _truncate(path / JOURNAL_NAME, int(journal["ledger_bytes"]))
        opened = cls(
            directory,
            str(started_with),
            str(journal["ledger_head"]),
            int(journal["rounds_bytes"]),
            int(journal["ledger_bytes"]),
        )
        ledger.pop("head", None)
        return opened, state, records, ledger

    # ------------------------------------------------------------------ committing
    def commit(
        self, record: dict[str, Any], ledger_round: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """Append the round's record and ledger line, then commit ``state`` (the rename)."""
        path = self.directory.path
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        rounds_bytes = atomic.append_bytes(path / RECORDS, line)
        ledger_line, head = round_line(self.ledger_head, ledger_round)
        ledger_bytes = atomic.append_bytes(path / JOURNAL_NAME, ledger_line)
        journal = {
            "spec_hash": self.spec_hash,
            "ledger_head": head,
            "rounds_bytes": rounds_bytes,
            "ledger_bytes": ledger_bytes,
        }
        atomic.write_torch(path / STATE, {**state, "journal": journal})
        self.ledger_head, self.rounds_bytes, self.ledger_bytes = head, rounds_bytes, ledger_bytes


def _committed_records(path: Any, size: int, expected: int) -> list[dict[str, Any]]:
    f = path / RECORDS
    try:
        with open(f, "rb") as fh:
            data = fh.read(size)
    except OSError as err:
        raise ResumeRefused(f"{f} cannot be read ({err}); refusing to resume.") from err
    if len(data) < size:
        raise ResumeRefused(
            f"{f} is shorter than the rounds committed to it ({len(data)} of {size} bytes); "
            "refusing to resume."
        )
    try:
        records = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as err:
        raise ResumeRefused(f"{f} holds a corrupt record; refusing to resume.") from err
    if len(records) != expected:
        raise ResumeRefused(
            f"{f} holds {len(records)} committed records but state.pt says {expected} rounds; "
            "refusing to resume."
        )
    return records


def _truncate(f: Any, size: int) -> None:
    """Cut a journal back to its committed size (drops a torn or uncommitted tail)."""
    if f.stat().st_size != size:
        with open(f, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())


__all__ = ["ResumeRefused", "RunJournal"]
