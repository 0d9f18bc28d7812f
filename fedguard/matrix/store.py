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
    status TEXT NOT NULL,          -- done | failed | incompatible
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
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        try:
            self.conn = sqlite3.connect(path, timeout=30)
            if existed:
                ok = self.conn.execute("PRAGMA quick_check").fetchone()
                if not ok or ok[0] != "ok":
                    raise sqlite3.DatabaseError(str(ok))
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"{path} is not a readable results database ({exc}); move it away or choose "
                "another --out (it is never overwritten)."
            ) from None

    def close(self) -> None:
        self.conn.close()

    def finished_keys(self) -> set[str]:
        rows = self.conn.execute("SELECT key FROM cells WHERE status IN ('done', 'incompatible')")
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
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT key, attack, defense, seed, axes, status, metrics, records, error, seconds "
            "FROM cells"
        )
        out = []
        for key, attack, defense, seed, axes, status, metrics, records, error, seconds in cur:
            if keys is not None and key not in keys:
                continue
            out.append(
                {
                    "key": key,
                    "attack": attack,
                    "defense": defense,
                    "seed": seed,
                    "axes": json.loads(axes),
                    "status": status,
                    "metrics": json.loads(metrics) if metrics else {},
                    "records": json.loads(records) if records else [],
                    "error": error,
                    "seconds": seconds,
                }
            )
        return out

    def specs(self) -> dict[str, dict[str, Any]]:
        """Canonical spec of every cell, by key (the report's setup section reads them)."""
        cur = self.conn.execute("SELECT key, spec FROM cells")
        return {key: json.loads(spec) for key, spec in cur}

    def versions(self) -> dict[str, tuple[str, str]]:
        """(fedguard version, code hash) that produced each cell, by key."""
        cur = self.conn.execute("SELECT key, version, code_hash FROM cells")
        return {key: (version, code) for key, version, code in cur}
