"""``results.sqlite``: one row per cell, keyed by the cell's canonical spec hash and the code hash.

Only the orchestrating process writes (workers return results), so there is one writer.
A corrupt database is reported and never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from functools import cache
from pathlib import Path
from typing import Any

from fedguard import __version__
from fedguard.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    attack TEXT NOT NULL,
    defense TEXT NOT NULL,
    seed INTEGER NOT NULL,
    axes TEXT NOT NULL,
    status TEXT NOT NULL,          -- done | failed | incompatible | diverged
    metrics TEXT,                  -- JSON
    records TEXT,                  -- JSON per-round records
    error TEXT,
    spec TEXT NOT NULL,            -- canonical spec, JSON
    version TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    seconds REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@cache
def code_hash() -> str:
    """Hash of fedguard's own code and its plugin packages: a fix invalidates cached cells."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for pkg in ("fedguard", "attacks", "defenses"):
        for file in sorted((root / pkg).rglob("*.py")):
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def cell_key(spec_hash: str) -> str:
    return f"{spec_hash}-{code_hash()}"


class ResultStore:
    """The matrix's results. ``read_only`` (``show``, ``report``) opens an existing database
    without ever writing to it: a missing, empty or foreign file is an error, not a new database.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        existed = path.is_file()
        if read_only and not existed:
            raise UserError(f"{path.parent} holds no results.sqlite; it is not a matrix directory.")
        if existed and path.stat().st_size == 0:
            # sqlite would take an empty file as a new database and write a schema into it
            raise UserError(
                f"{path} is empty (0 bytes), not a results database; move it away or choose "
                "another --out (it is never overwritten)."
            )
        try:
            if read_only:
                self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(path, timeout=30)
            if existed:
                ok = self.conn.execute("PRAGMA quick_check").fetchone()
                if not ok or ok[0] != "ok":
                    raise sqlite3.DatabaseError(str(ok))
                tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
                if not {"cells", "meta"} <= tables:
                    raise sqlite3.DatabaseError("no cells/meta tables: not fedguard's")
            if not read_only:
                self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> UserError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return UserError(
            f"{self.path} is not a readable results database ({reason}); move it away or choose "
            "another --out (it is never overwritten)."
        )

    def close(self) -> None:
        self.conn.close()

    def finished_keys(self) -> set[str]:
        try:
            rows = self.conn.execute(
                "SELECT key FROM cells WHERE status IN ('done', 'incompatible', 'diverged')"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        return {r[0] for r in rows}

    def put(
        self,
        key: str,
        cell: dict[str, Any],
        status: str,
        metrics: dict[str, Any] | None = None,
        records: list[dict[str, Any]] | None = None,
        error: str | None = None,
        seconds: float | None = None,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    cell["attack"],
                    cell["defense"],
                    cell["seed"],
                    json.dumps(cell["axes"]),
                    status,
                    json.dumps(metrics) if metrics is not None else None,
                    json.dumps(records) if records is not None else None,
                    error,
                    json.dumps(cell["spec"], sort_keys=True),
                    __version__,
                    code_hash(),
                    seconds,
                    time.time(),
                ),
            )

    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> dict[str, Any]:
        try:
            pairs = self.conn.execute("SELECT key, value FROM meta").fetchall()
            return {str(k): json.loads(v) for k, v in pairs}
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise self._unreadable(exc) from None

    def rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]:
        try:
            fetched = self.conn.execute(
                "SELECT key, attack, defense, seed, axes, status, metrics, records, error, seconds "
                "FROM cells"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        out = []
        for row in fetched:
            if keys is not None and row[0] not in keys:
                continue
            out.append(self._decode(row))
        return out

    def _decode(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """One row, with every field checked: a bad row is named, not a traceback."""
        key, attack, defense, seed, axes, status, metrics, records, error, seconds = row
        try:
            decoded = {
                "key": _text(key),
                "attack": _text(attack),
                "defense": _text(defense),
                "seed": int(seed),
                "axes": json.loads(axes),
                "status": _text(status),
                "metrics": json.loads(metrics) if metrics else {},
                "records": json.loads(records) if records else [],
                "error": None if error is None else _text(error),
                "seconds": None if seconds is None else float(seconds),
            }
            if decoded["status"] not in STATUSES:
                raise ValueError(f"unknown status {decoded['status']!r}")
            if not isinstance(decoded["metrics"], dict) or not isinstance(decoded["axes"], list):
                raise ValueError("metrics must be a JSON object and axes a list")
            if not all(isinstance(a, list) and len(a) == 2 for a in decoded["axes"]):
                raise ValueError("axes must be [name, value] pairs")
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"{self.path}: the row of cell {str(key)[:40]!r} is corrupt ({exc}); delete that "
                "row or move the database away to run the cell again."
            ) from None
        return decoded

    def specs(self) -> dict[str, dict[str, Any]]:
        """Canonical spec of every cell, by key (the report's setup section reads them)."""
        try:
            cur = self.conn.execute("SELECT key, spec FROM cells").fetchall()
            return {str(key): json.loads(spec) for key, spec in cur}
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise self._unreadable(exc) from None

    def versions(self) -> dict[str, tuple[str, str]]:
        """(fedguard version, code hash) that produced each cell, by key."""
        try:
            cur = self.conn.execute("SELECT key, version, code_hash FROM cells").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        return {key: (version, code) for key, version, code in cur}


#: What a cell's ``status`` column may hold; ``diverged`` cells finished with a non-finite model
#: and are excluded from verdicts.
STATUSES = ("done", "failed", "incompatible", "diverged")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value
