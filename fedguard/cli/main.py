"""``fedguard`` command line. User mistakes print one sentence and exit with status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedguard.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="fedguard: privacy-and-robustness evaluation suite for federated learning.",
)
list_app = typer.Typer(no_args_is_help=True, help="List things fedguard knows about.")
app.add_typer(list_app, name="list")
err = Console(stderr=True)
out = Console()


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML run config.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory to write.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Override the number of rounds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    save_updates: Annotated[
        bool, typer.Option("--save-updates", help="Keep per-round client updates (sensitive).")
    ] = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue an interrupted run directory.")
    ] = None,
) -> None:
    """Train one federated run and write its run directory."""
    from fedguard.cli.run_command import run_command

    run_command(config, out_dir, rounds, seed, device, save_updates, resume)


@app.command()
def show(path: Annotated[Path, typer.Argument(help="Run or matrix directory.")]) -> None:
    """Print the summary of a finished (or interrupted) run or matrix."""
    from fedguard.cli.show_command import show_command

    show_command(path)


@list_app.command("components")
def list_components() -> None:
    """Every registered component name, by kind."""
    from fedguard.cli.tables import components_table

    out.print(components_table())


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted; completed rounds are saved — continue with --resume.")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
