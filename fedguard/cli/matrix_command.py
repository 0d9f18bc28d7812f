"""``fedguard matrix``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedguard.errors import Interrupted, UserError
from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.show import show_matrix


def matrix_command(
    config: Path,
    out: Path | None,
    workers: int,
    executor: str,
    address: str | None,
    metric: str | None,
    yes: bool,
) -> None:
    console = Console()
    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray; got {executor!r}.")
    if workers < 1:
        raise UserError("--workers must be at least 1.")
    plan = plan_matrix(config, confirmed=yes)
    out = out or Path("reports/matrices") / plan.config.name
    console.print(
        f"matrix [bold]{plan.config.name}[/]: {len(plan.cells)} cells "
        f"({len(plan.incompatible)} incompatible) → {out}"
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

        def on_result(cell, result) -> None:
            bar.update(task, advance=1, last=f"{cell.defense} × {cell.attack}: {result['status']}")

        try:
            summary = run_matrix(plan, out, workers, executor, address, on_result)
        except KeyboardInterrupt:
            raise Interrupted(
                f"finished cells are stored in {out}/results.sqlite; resume with: "
                f"fedguard matrix {config} --out {out}"
            ) from None
    console.print(f"ran {summary['ran']} cells, {summary['skipped']} already finished")
    show_matrix(out, console, metric)
    console.print(
        f"\nresults: {out}/results.sqlite, {out}/matrix.csv, heatmaps: "
        + ", ".join(p.name for p in summary["heatmaps"])
    )
