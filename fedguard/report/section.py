"""One section of a report: an anchor id, a title and its (already escaped) HTML body."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    html: str


__all__ = ["Section"]
