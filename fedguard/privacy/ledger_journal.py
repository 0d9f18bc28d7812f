"""The run's privacy ledger as an append-only, hash-chained journal (``RUN/ledger.jsonl``).

Line 1 is the header (format, sampling description, δ, the hash of the spec the run started
with); every further line is one round's events. Each line carries ``chain``: the SHA-256 of the
previous line's ``chain`` followed by the canonical JSON of this line without it (the header
chains from the empty string). Appending a round therefore costs the same at round 10 and at round
10,000, and a reader recomputes the chain: a flipped byte, a dropped or reordered round, or a
truncated line is refused with one sentence naming the line.

What the chain is *not*: a proof of who wrote the file. Anyone can recompute SHA-256; the chain
protects against accidental corruption only. Deliberate edits are caught by cross-checking the
ledger against the spec and records, by replaying the run, and by signatures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedguard.privacy.ledger import LedgerError

JOURNAL_FORMAT = "fedguard-run-ledger"
JOURNAL_VERSION = 2
JOURNAL_NAME = "ledger.jsonl"


def canonical(body: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII, finite numbers only: the bytes that are hashed."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def chain(previous: str, body: Mapping[str, Any]) -> str:
    """The chain value of a line whose content (without ``chain``) is ``body``."""
    return hashlib.sha256(previous.encode() + canonical(dict(body))).hexdigest()


def header_line(
    sampling: Mapping[str, Any] | None, delta: float, spec_hash: str
) -> tuple[bytes, str]:
    """The journal's first line and its chain value."""
    body = {
        "format": JOURNAL_FORMAT,
        "version": JOURNAL_VERSION,
        "sampling": dict(sampling or {}),
        "delta": delta,
        "spec_hash": spec_hash,
    }
    head = chain("", body)
    return canonical({**body, "chain": head}) + b"\n", head


def round_line(previous: str, entry: Mapping[str, Any]) -> tuple[bytes, str]:
    """One round's line (``{"round", "population", "clients"}``) chained after ``previous``."""
    body = {k: v for k, v in entry.items() if k != "chain"}
    head = chain(previous, body)
    try:
        return canonical({**body, "chain": head}) + b"\n", head
    except (TypeError, ValueError) as err:  # pragma: no cover - events are validated upstream
        raise LedgerError(f"a ledger round must be JSON-serialisable and finite ({err}).") from err


def parse_journal(data: bytes, source: str) -> dict[str, Any]:
    """The ledger dict (``sampling``, ``delta``, ``spec_hash``, ``rounds``, ``head``) of a
    journal's bytes, after checking every link of the chain."""
    if not data.endswith(b"\n"):
        raise LedgerError(
            f"{source} ends in an incomplete line (an interrupted write); resume the run or "
            "restore the file."
        )
    lines = data.split(b"\n")[:-1]
    previous = ""
    ledger: dict[str, Any] = {"rounds": []}
    for number, raw in enumerate(lines, start=1):
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LedgerError(f"{source} line {number} is not valid JSON.") from err
        if not isinstance(item, dict) or not isinstance(item.get("chain"), str):
            raise LedgerError(f"{source} line {number} has no chain value.")
        body = {k: v for k, v in item.items() if k != "chain"}
        try:
            expected = chain(previous, body)
        except (TypeError, ValueError) as err:
            raise LedgerError(f"{source} line {number} holds non-finite values.") from err
        if expected != item["chain"]:
            raise LedgerError(
                f"{source} line {number} was modified, dropped or reordered: its SHA-256 chain "
                "does not match."
            )
        previous = expected
        if number == 1:
            if body.get("format") != JOURNAL_FORMAT or body.get("version") != JOURNAL_VERSION:
                raise LedgerError(f"{source} is not a fedguard run ledger (version 2).")
            ledger.update(
                sampling=body.get("sampling"),
                delta=body.get("delta"),
                spec_hash=body.get("spec_hash"),
            )
        else:
            if body.get("round") != number - 1:
                raise LedgerError(
                    f"{source} line {number} records round {body.get('round')!r}; expected "
                    f"round {number - 1}."
                )
            ledger["rounds"].append(body)
    if not lines:
        raise LedgerError(f"{source} is empty (no header line).")
    ledger["head"] = previous
    return ledger


def read_journal(path: Path, size: int | None = None) -> dict[str, Any]:
    """Read and verify ``path``; with ``size``, only its first ``size`` bytes (the committed
    part: a run interrupted after appending but before committing a round)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read() if size is None else fh.read(size)
    except FileNotFoundError as err:
        raise LedgerError(f"ledger file {path} does not exist.") from err
    except OSError as err:
        raise LedgerError(f"ledger file {path} cannot be read ({err}).") from err
    if size is not None and len(data) < size:
        raise LedgerError(
            f"ledger file {path} is shorter than the rounds committed to it ({len(data)} of "
            f"{size} bytes): privacy spending is missing."
        )
    return parse_journal(data, f"ledger file {path}")


__all__ = [
    "JOURNAL_FORMAT",
    "JOURNAL_NAME",
    "JOURNAL_VERSION",
    "canonical",
    "chain",
    "header_line",
    "parse_journal",
    "read_journal",
    "round_line",
]
