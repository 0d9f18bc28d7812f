"""``fedguard matrix``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedguard.errors import Interrupted, UserError
from fedguard.matrix.config import Cell
from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.show import show_matrix
from fedguard.threads import requested_threads, usable_cores


def matrix_command(
    config: Path,
    out: Path | None,
    workers: int | None,
    executor: str,
    address: str | None,
    metric: str | None,
    yes: bool,
) -> None:
    console = Console()
    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray; got {executor!r}.")
    if workers is None:
        workers = usable_cores()
    if workers < 1:
        raise UserError(f"--workers must be at least 1; got {workers}.")
    plan = plan_matrix(config, confirmed=yes)
    out = out or Path("reports/matrices") / plan.config.name
    console.print(
        f"matrix [bold]{plan.config.name}[/]: {len(plan.cells)} cells "
        f"({len(plan.incompatible)} incompatible) → {out}; {workers} worker(s), "
        f"{requested_threads()} torch thread(s) each",
        highlight=False,
    )
    with Progress(
        TextColumn("[bold]cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("cells", total=None, last="")

        def on_start(to_run: int, finished: int) -> None:
            bar.update(task, total=to_run, last=f"{finished} already finished" if finished else "")

        def on_result(cell: Cell, result: dict[str, Any]) -> None:
            bar.update(task, advance=1, last=f"{cell.defense} × {cell.attack}: {result['status']}")

        try:
            summary = run_matrix(plan, out, workers, executor, address, on_result, on_start)
        except KeyboardInterrupt:
            raise Interrupted(
                f"finished cells are stored in {out}/results.sqlite; resume with: "
                f"fedguard matrix {config} --out {out}"
            ) from None
    console.print(f"ran {summary['ran']} cells, {summary['skipped']} already finished")
    show_matrix(out, console, metric, summary.get("tables"))
    console.print(
        f"\nresults: {out}/results.sqlite, {out}/matrix.csv, {out}/verdicts.csv, heatmaps: "
        + ", ".join(p.name for p in summary["heatmaps"])
    )
