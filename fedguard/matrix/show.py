"""Terminal rendering of a matrix: defense rows × attack columns, mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fedguard.matrix.store import ResultStore
from fedguard.matrix.summary import HELD_THRESHOLD, pivot, status_cells, tidy_frame, verdicts
from fedguard.safe_text import markup_safe


def matrix_table(tidy, metric: str, title: str) -> Table:
    mean, std = pivot(tidy, metric)
    table = Table(
        title=markup_safe(f"{title} — {metric.replace('_', ' ')} (mean ± std over seeds)")
    )
    table.add_column("defense \\ attack", style="bold", overflow="fold")
    statuses = status_cells(tidy)
    attacks = list(mean.columns) if not mean.empty else sorted(set(tidy.attack))
    for attack in attacks:
        table.add_column(markup_safe(attack), justify="right", overflow="fold", min_width=11)
    rows = list(mean.index) if not mean.empty else sorted(set(tidy.defense))
    for row in rows:
        cells = []
        for attack in attacks:
            v = mean.at[row, attack] if not mean.empty and attack in mean.columns else np.nan
            s = std.at[row, attack] if not std.empty and attack in std.columns else np.nan
            if np.isfinite(v):
                cells.append(f"{v:.3f}" + (f"±{s:.3f}" if np.isfinite(s) else ""))
            else:
                cells.append(f"[dim]{markup_safe(statuses.get((row, attack), '—'))}[/]")
        table.add_row(markup_safe(row), *cells)
    return table


def show_matrix(path: Path, console: Console, metric: str | None = None) -> None:
    store = ResultStore(path / "results.sqlite", read_only=True)
    try:
        meta = store.meta()
        rows = store.rows(set(meta.get("keys", [])) or None)
    finally:
        store.close()
    tidy = tidy_frame(rows)
    metric = metric or meta.get("metric", "test_accuracy")
    console.print(matrix_table(tidy, metric, meta.get("name", path.name)))
    failed = [r for r in rows if r["status"] in ("failed", "diverged")]
    incompatible = {
        (r["defense"], r["attack"]): r["error"] for r in rows if r["status"] == "incompatible"
    }
    for (d, a), why in sorted(incompatible.items()):
        console.print(f"[yellow]incompatible[/] {markup_safe(f'{d} × {a}: {why}')}")
    for r in failed:
        console.print(
            f"[red]{r['status']}[/] "
            + markup_safe(
                f"{r['defense']} × {r['attack']} (seed {r['seed']}): "
                + ((r["error"] or "").splitlines() or [""])[0]
            )
        )
    vs = verdicts(tidy)
    if vs:
        console.print(
            f"\n[bold]Which defenses held[/] (rule: one-sided 95% upper bound over seeds of the "
            f"accuracy drop ≤ {HELD_THRESHOLD:g} and backdoor success ≤ 0.2; reconstruction "
            "PSNR ≤ 20 dB; membership AUC ≤ 0.55):"
        )
        for v in vs:
            mark = "[green]held[/]" if v.held else "[red]fell[/]"
            console.print(f"  {mark}  {markup_safe(v.sentence())}")
    console.print(
        f"\ncells: {len(rows)} ({sum(r['status'] == 'done' for r in rows)} done, "
        f"{sum(r['status'] == 'diverged' for r in rows)} diverged, "
        f"{sum(r['status'] == 'failed' for r in rows)} failed, "
        f"{len(incompatible)} incompatible pairs)"
    )
