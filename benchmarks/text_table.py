"""A plain-text table for the benchmark scripts (they print to a terminal or a log file)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(title: str, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> None:
    """``title``, then the columns left-aligned to their widest cell (cells printed with str)."""
    cells = [[str(c) for c in row] for row in rows]
    names = [str(h) for h in header]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(names)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(names, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
