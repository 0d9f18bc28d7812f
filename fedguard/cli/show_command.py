"""``fedguard show``: summary of a run (or matrix) directory."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from fedguard.cli.tables import print_summary, rounds_table
from fedguard.errors import UserError
from fedguard.storage.run_dir import RunDirectory


def show_command(path: Path, metric: str | None = None, partition: bool = False) -> None:
    console = Console()
    if (path / "results.sqlite").is_file():
        from fedguard.matrix.show import show_matrix

        show_matrix(path, console, metric)
        return
    run_dir = RunDirectory(path)
    if not run_dir.exists():
        raise UserError(f"{path} is neither a run directory nor a matrix directory.")
    spec = run_dir.spec()
    from fedguard.audit.evidence import gather_evidence

    # first line: seal, cross-checks, signature (a contradiction is exit 2)
    console.print(gather_evidence(run_dir).line(), highlight=False, soft_wrap=True)
    records = run_dir.rounds()
    console.print(rounds_table(records))
    summary = run_dir.summary() or {
        "name": spec.name,
        "status": f"interrupted after {len(records)} of {spec.rounds} rounds (resume with --resume)",
    }
    print_summary(console, summary, spec, run_dir.ledger())
    if partition:
        from fedguard.cli.tables import partition_table

        console.print(partition_table(run_dir.partition()))
