"""Rich tables for the terminal."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fedguard import registry
from fedguard.safe_text import markup_safe


def components_table() -> Table:
    table = Table(title="Registered components")
    table.add_column("kind", style="bold")
    table.add_column("names")
    for kind in registry.KINDS:
        table.add_row(kind, ", ".join(registry.names(kind)) or "—")
    return table


def _fmt(value: Any) -> str:
    """A cell value as inert text: a run folder may come from someone else, so markup and
    terminal escape codes in its strings are shown, not interpreted."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return markup_safe(str(value))


def rounds_table(records: list[dict[str, Any]], limit: int = 12) -> Table:
    table = Table(title="Rounds")
    cols = ["round", "clients", "test_accuracy", "test_loss", "flagged", "seconds"]
    extra = [k for k in ("backdoor_success", "epsilon") if any(k in r for r in records)]
    for c in cols + extra:
        table.add_column(c.replace("_", " "), justify="right")
    shown = records if len(records) <= limit else records[: limit // 2] + records[-limit // 2 :]
    for r in shown:
        row = [r.get(c) for c in cols + extra]
        row[4] = len(r.get("flagged") or [])
        table.add_row(*(_fmt(v) for v in row))
    return table


def summary_table(summary: dict[str, Any], title: str = "Run summary") -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in summary.items():
        if isinstance(v, dict):
            continue
        table.add_row(_fmt(str(k).replace("_", " ")), _fmt(v))
    return table


def partition_table(partition: list[dict[str, Any]]) -> Table:
    """Samples and label histogram per client."""
    table = Table(title="Partition (samples and label histogram per client)")
    table.add_column("client", justify="right")
    table.add_column("samples", justify="right")
    n_classes = len(partition[0]["labels"]) if partition else 0
    for k in range(n_classes):
        table.add_column(str(k), justify="right", style="dim")
    for row in partition:
        table.add_row(_fmt(row["client"]), _fmt(row["samples"]), *map(_fmt, row["labels"]))
    return table
