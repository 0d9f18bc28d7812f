"""Terminal rendering of a matrix: defense rows × attack columns, mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fedguard.matrix.store import ResultStore
from fedguard.matrix.summary import HELD_THRESHOLD, pivot, status_cells, tidy_frame, verdicts


def matrix_table(tidy, metric: str, title: str) -> Table:
    mean, std = pivot(tidy, metric)
    table = Table(title=f"{title} — {metric.replace('_', ' ')} (mean ± std over seeds)")
    table.add_column("defense \\ attack", style="bold", overflow="fold")
    statuses = status_cells(tidy)
    attacks = list(mean.columns) if not mean.empty else sorted(set(tidy.attack))
    for attack in attacks:
        table.add_column(attack, justify="right", overflow="fold", min_width=11)
    rows = list(mean.index) if not mean.empty else sorted(set(tidy.defense))
    for row in rows:
        cells = []
        for attack in attacks:
            v = mean.at[row, attack] if not mean.empty and attack in mean.columns else np.nan
            s = std.at[row, attack] if not std.empty and attack in std.columns else np.nan
            if np.isfinite(v):
                cells.append(f"{v:.3f}" + (f"±{s:.3f}" if np.isfinite(s) else ""))
            else:
                cells.append(f"[dim]{statuses.get((row, attack), '—')}[/]")
        table.add_row(row, *cells)
    return table


def show_matrix(path: Path, console: Console, metric: str | None = None) -> None:
    store = ResultStore(path / "results.sqlite")
    try:
        meta = store.meta()
        rows = store.rows(set(meta.get("keys", [])) or None)
    finally:
        store.close()
    tidy = tidy_frame(rows)
    metric = metric or meta.get("metric", "test_accuracy")
    console.print(matrix_table(tidy, metric, meta.get("name", path.name)))
    failed = [r for r in rows if r["status"] == "failed"]
    incompatible = {
        (r["defense"], r["attack"]): r["error"] for r in rows if r["status"] == "incompatible"
    }
    for (d, a), why in sorted(incompatible.items()):
        console.print(f"[yellow]incompatible[/] {d} × {a}: {why}")
    for r in failed:
        console.print(
            f"[red]failed[/] {r['defense']} × {r['attack']} (seed {r['seed']}): {(r['error'] or '').splitlines()[0]}"
        )
    vs = verdicts(tidy)
    if vs:
        console.print(
            f"\n[bold]Which defenses held[/] (rule: upper 95% bound of the accuracy drop ≤ "
            f"{100 * HELD_THRESHOLD:.0f} points, backdoor success ≤ 20%):"
        )
        for v in vs:
            mark = "[green]held[/]" if v.held else "[red]fell[/]"
            console.print(f"  {mark}  {v.sentence()}")
    console.print(
        f"\ncells: {len(rows)} ({sum(r['status'] == 'done' for r in rows)} done, {len(failed)} failed, {len(incompatible)} incompatible pairs)"
    )
