"""``fedguard run``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedguard.cli.exit_codes import FAILED
from fedguard.cli.tables import print_summary
from fedguard.config import load_spec
from fedguard.core.runner import default_run_dir
from fedguard.errors import Interrupted, UserError
from fedguard.launch import build_simulation, execute
from fedguard.safe_text import markup_safe
from fedguard.storage.run_dir import RunDirectory


def run_command(
    config: Path | None,
    out_dir: Path | None,
    rounds: int | None,
    seed: int | None,
    device: str | None,
    save_updates: bool,
    resume: Path | None,
) -> int:
    """Train (or resume) a run; returns the exit status (1 when the run diverged)."""
    console = Console()
    if resume is not None:
        run_dir = RunDirectory(resume)
        if run_dir.complete:
            raise UserError(f"{resume} is already complete; nothing to resume.")
        spec = run_dir.spec()
        out = resume
    else:
        if config is None:
            raise UserError("give a CONFIG.yaml to run, or --resume DIR to continue a run.")
        overrides = {"rounds": rounds, "seed": seed, "device": device}
        if save_updates:
            overrides["save_updates"] = True
        spec = load_spec(config, **overrides)
        out = out_dir or default_run_dir(spec)
    existing = RunDirectory(out)
    if resume is None and out_dir is None and existing.complete:
        # the default directory is named by the spec's hash: this exact run is already done
        console.print(f"{out} already holds this run (same spec hash); its summary:")
        print_summary(console, existing.summary() or {}, spec, existing.ledger())
        return 0
    if resume is None and existing.exists():
        raise UserError(
            f"{out} already holds a completed run; choose another --out."
            if existing.complete
            else f"{out} holds an interrupted run; continue it with --resume {out}."
        )
    sim = build_simulation(spec)  # validates components, data and device before anything is written
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{spec.name} rounds", total=spec.rounds, status="")

        def progress(done: int, total: int, record: dict) -> None:
            acc = record.get("test_accuracy")
            bar.update(task, completed=done, status=f"acc {acc:.3f}" if acc is not None else "")

        try:
            result = execute(spec, out, progress, resume=resume is not None, simulation=sim)
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(out)) from None
    print_summary(console, result.summary, spec, result.ledger)
    console.print(f"run directory: [bold]{out}[/]")
    if result.summary.get("diverged"):
        Console(stderr=True).print(
            f"[bold red]error:[/] {markup_safe(result.summary['diverged'])}", soft_wrap=True
        )
        return FAILED
    if spec.save_updates:
        console.print(
            "[yellow]note:[/] per-round client updates were saved under "
            f"{out}/updates (owner-only). They are exactly what DP and secure aggregation "
            "protect: do not share them."
        )
    return 0


def _resume_hint(out: Path) -> str:
    """What Ctrl-C left behind and how to continue it."""
    if RunDirectory(out).exists():
        return f"completed rounds are saved; resume with: fedguard run --resume {out}"
    return "no round had completed and nothing was written; start the run again."
