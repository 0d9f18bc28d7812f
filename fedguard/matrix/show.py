"""Terminal rendering of a matrix: the answer (which defenses held) first, then the evidence.

Tables never hide data at any terminal width: when the full labels do not fit, column labels and
then row labels become short codes with a legend, and if that is still too wide the columns are
split over several tables (each says which of the columns it holds). Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from fedguard.errors import UserError
from fedguard.matrix.store import ResultStore
from fedguard.matrix.summary import MatrixTables, pivot, status_cells, tidy_frame
from fedguard.matrix.verdict import (
    AT_CHANCE,
    DIVERGED,
    FAILS_WITHOUT_ATTACK,
    FELL,
    HELD,
    NOT_VULNERABLE,
    VULNERABLE,
    answer,
    rule_text,
    verdict_grid,
    verdicts,
)
from fedguard.safe_text import markup_safe

SHORT = {
    HELD: "[green]held[/]",
    FELL: "[red]FELL[/]",
    VULNERABLE: "[red]vulnerable[/]",
    NOT_VULNERABLE: "[green]not vuln.[/]",
    FAILS_WITHOUT_ATTACK: "[yellow]fails w/o atk[/]",
    DIVERGED: "[dim]diverged[/]",
    AT_CHANCE: "[dim]at chance[/]",
}


def _table(
    title: str,
    corner: str,
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[str]],
) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column(corner, style="bold", no_wrap=True)
    for c in columns:
        table.add_column(c, justify="right", no_wrap=True)
    for r, row in zip(rows, cells, strict=True):
        table.add_row(r, *row)
    return table


def _fits(console: Console, table: Table) -> bool:
    """Whether the table's natural width (measured without the console's clamp) fits."""
    unclamped = console.options.update_width(10_000)
    return Measurement.get(console, unclamped, table).maximum <= console.width


def fitted_tables(
    console: Console,
    title: str,
    corner: str,
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[str]],
) -> list[Table | str]:
    """The table (or tables, plus legend lines) that show every cell within the console width."""
    table = _table(title, corner, rows, columns, cells)
    if _fits(console, table):
        return [table]
    col_codes = [f"A{i + 1}" for i in range(len(columns))]
    legend = ["  " + ", ".join(f"{c} = {name}" for c, name in zip(col_codes, columns, strict=True))]
    table = _table(title, corner, rows, col_codes, cells)
    if _fits(console, table):
        return [table, *legend]
    row_codes = [f"D{i + 1}" for i in range(len(rows))]
    legend.append(
        "  " + ", ".join(f"{c} = {name}" for c, name in zip(row_codes, rows, strict=True))
    )
    table = _table(title, "", row_codes, col_codes, cells)
    if _fits(console, table):
        return [table, *legend]
    # still too wide: split the columns over several tables, each naming its share
    out: list[Table | str] = []
    start = 0
    while start < len(columns):
        stop = start + 1
        while stop < len(columns):
            trial = _table(
                "", "", row_codes, col_codes[start : stop + 1], [c[start : stop + 1] for c in cells]
            )
            if not _fits(console, trial):
                break
            stop += 1
        part = f"{title} (columns {col_codes[start]}–{col_codes[stop - 1]} of {len(columns)})"
        out.append(
            _table(part, "", row_codes, col_codes[start:stop], [c[start:stop] for c in cells])
        )
        start = stop
    return [*out, *legend]


def metric_cells(
    tidy: pd.DataFrame, metric: str, digits: int = 3
) -> tuple[list[str], list[str], list[list[str]]]:
    """(rows, columns, "mean±std" strings) of one metric, with the status of cells without one."""
    mean, std = pivot(tidy, metric)
    statuses = status_cells(tidy)
    attacks = list(mean.columns) if not mean.empty else sorted(set(tidy.attack))
    rows = list(mean.index) if not mean.empty else sorted(set(tidy.defense))
    cells = []
    for row in rows:
        line = []
        for attack in attacks:
            v = mean.at[row, attack] if not mean.empty and attack in mean.columns else np.nan
            s = std.at[row, attack] if not std.empty and attack in std.columns else np.nan
            if np.isfinite(v):
                line.append(f"{v:.{digits}f}" + (f"±{s:.{digits}f}" if np.isfinite(s) else ""))
            else:
                line.append(f"[dim]{markup_safe(statuses.get((row, attack), '—'))}[/]")
        cells.append(line)
    # labels come from the results database: shown, never interpreted as markup
    return [markup_safe(str(r)) for r in rows], [markup_safe(str(a)) for a in attacks], cells


#: metric names listed in the error for an unknown ``--metric`` (the rest: matrix.csv)
LISTED_METRICS = 40


def check_metric(tidy: pd.DataFrame, metric: str) -> None:
    """A UserError naming the metrics this matrix has when ``metric`` is not one of them."""
    known = sorted(str(m) for m in tidy["metric"].unique()) if "metric" in tidy else []
    if metric in known:
        return
    shown = ", ".join(known[:LISTED_METRICS])
    more = (
        f" and {len(known) - LISTED_METRICS} more (see matrix.csv)"
        if len(known) > LISTED_METRICS
        else ""
    )
    raise UserError(
        f"--metric {metric!r} is not a metric of this matrix; it has: {shown or 'none'}{more}."
    )


def show_matrix(
    path: Path, console: Console, metric: str | None = None, tables: MatrixTables | None = None
) -> None:
    """Print the matrix in ``path``; ``tables``: what the matrix command just computed from the
    same database (the same rows, frame and verdicts; not read and judged a second time)."""
    if tables is None:
        store = ResultStore(path / "results.sqlite", read_only=True)
        try:
            meta = store.meta()
            rows = store.rows(set(meta.get("keys", [])) or None)
        finally:
            store.close()
        frame = tidy_frame(rows)
        name = meta.get("name", path.name)
        tables = MatrixTables(
            name, meta.get("metric", "test_accuracy"), rows, frame, verdicts(frame)
        )
    rows, tidy, name, vs = tables.rows, tables.tidy, tables.name, tables.verdicts
    if metric is not None:
        check_metric(tidy, metric)  # before anything is printed
    console.print(f"[bold]Which defenses held — {name}[/]")
    for line in answer(vs):
        console.print("  " + line, highlight=False)
    grid = verdict_grid(vs)
    if not grid.empty:
        cells = [[SHORT.get(v, v) for v in grid.loc[r]] for r in grid.index]
        for part in fitted_tables(
            console, "Verdicts", "defense \\ attack", list(grid.index), list(grid.columns), cells
        ):
            console.print(part, highlight=False)
    if vs:
        console.print(f"[dim]{rule_text(tidy)}[/]", highlight=False)
    metric = metric or tables.metric
    for digits in (3, 2):  # fewer digits before splitting the table (full precision: matrix.csv)
        row_names, columns, values = metric_cells(tidy, metric, digits)
        # an attack's metric keeps its name as matrix.csv spells it ("analytic.psnr_db")
        label = metric if "." in metric else metric.replace("_", " ")
        title = f"{label} (mean±std over seeds, {digits} decimals)"
        parts = fitted_tables(console, title, "defense \\ attack", row_names, columns, values)
        if sum(isinstance(p, Table) for p in parts) == 1:
            break
    for part in parts:
        console.print(part, highlight=False)
    if metric == "detection_auroc":
        console.print(
            "[dim]detection AUROC below 0.5: the rule ranked the attackers as less suspicious "
            "than honest clients (worse than chance).[/]"
        )
    failed = [r for r in rows if r["status"] == "failed"]
    incompatible = {
        (r["defense"], r["attack"]): r["error"] for r in rows if r["status"] == "incompatible"
    }
    for (d, a), why in sorted(incompatible.items()):
        console.print(
            f"[yellow]incompatible[/] {markup_safe(f'{d} × {a}: {why}')}", highlight=False
        )
    for r in failed:
        first = (r["error"] or "").splitlines()[0] if r["error"] else ""
        console.print(
            "[red]failed[/] "
            + markup_safe(f"{r['defense']} × {r['attack']} (seed {r['seed']}): {first}"),
            highlight=False,
        )
    console.print(
        f"cells: {len(rows)} ({sum(r['status'] == 'done' for r in rows)} done, {len(failed)} "
        f"failed, {len(incompatible)} incompatible pairs); every cell and seed: matrix.csv, "
        "verdicts: verdicts.csv",
        highlight=False,
    )
