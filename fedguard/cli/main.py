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
    no_args_is_help=False,  # no command is a one-line usage error (exit 2), not a help page
    pretty_exceptions_enable=False,
    help="fedguard: privacy-and-robustness evaluation suite for federated learning.",
)
list_app = typer.Typer(no_args_is_help=False, help="List things fedguard knows about.")
app.add_typer(list_app, name="list")
data_app = typer.Typer(no_args_is_help=False, help="Fetch and list datasets in the data cache.")
app.add_typer(data_app, name="data")
keys_app = typer.Typer(no_args_is_help=False, help="Your Ed25519 key for signing runs.")
app.add_typer(keys_app, name="keys")
err = Console(stderr=True)
out = Console()


@app.callback()
def options(
    threads: Annotated[
        str | None,  # validated by configure_threads: one sentence naming the field
        typer.Option(
            "--threads",
            envvar="FEDGUARD_THREADS",
            metavar="N",
            help="Torch threads per process (default 1; recorded in env.json).",
        ),
    ] = None,
) -> None:
    """Options for every command."""
    from fedguard.threads import configure_threads

    configure_threads(threads)


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

    raise typer.Exit(run_command(config, out_dir, rounds, seed, device, save_updates, resume))


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="Run or matrix directory.")],
    metric: Annotated[str | None, typer.Option(help="Metric for a matrix table.")] = None,
    partition: Annotated[
        bool, typer.Option("--partition", help="Also print samples and labels per client.")
    ] = False,
) -> None:
    """Print the summary of a finished (or interrupted) run or matrix."""
    from fedguard.cli.show_command import show_command

    show_command(path, metric, partition)


@app.command()
def matrix(
    config: Annotated[Path, typer.Argument(help="YAML matrix config.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Matrix directory.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Parallel cells (local processes; default: the usable cores)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (or auto).")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric shown in the table.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Run even past max_cells.")] = False,
) -> None:
    """Run every attack × defense × seed cell; resumable (finished cells are skipped)."""
    from fedguard.cli.matrix_command import matrix_command

    matrix_command(config, out_dir, workers, executor, address, metric, yes)


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="Run or matrix directory.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file to write.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write the same content as PDF.")] = False,
    redact: Annotated[
        bool, typer.Option("--redact", help="Mask planted secrets in leaked-text examples.")
    ] = False,
) -> None:
    """Write one self-contained HTML audit report (images embedded, no network)."""
    from fedguard.cli.report_command import report_command

    report_command(path, out_file, pdf, redact)


@app.command()
def contrib(
    run_dir: Annotated[Path, typer.Argument(help="Finished run directory.")],
    method: Annotated[
        str | None, typer.Option(help="Valuation method (see list components).")
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(help="Distinct utility evaluations (default 32n; repeats are cached)."),
    ] = None,
    utility: Annotated[str, typer.Option(help="accuracy or loss.")] = "loss",
    rebuild: Annotated[
        str,
        typer.Option(help="reconstruct-multi-round, reconstruct-one-round or retrain."),
    ] = "reconstruct-multi-round",
    seed: Annotated[int, typer.Option(help="Seed of the estimator's sampling.")] = 0,
    training_seeds: Annotated[
        int,
        typer.Option(help="Retrain with this many training seeds; interval over them."),
    ] = 1,
    compare: Annotated[
        list[str] | None,
        typer.Option(help="Also run this method (repeatable) and report the rank agreement."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Value every client's contribution (Shapley and proxies), flag free-riders."""
    from fedguard.cli.contrib_command import contrib_command

    raise typer.Exit(
        contrib_command(
            run_dir,
            method,
            budget,
            utility,
            as_json,
            rebuild=rebuild,
            seed=seed,
            training_seeds=training_seeds,
            compare=compare or (),
        )
    )


@app.command()
def audit(
    run: Annotated[
        Path | None, typer.Argument(help="Run directory (omit for the calculator).")
    ] = None,
    delta: Annotated[
        float | None, typer.Option(help="δ (default: the run's privacy.delta, or 1e-5).")
    ] = None,
    accountant: Annotated[str, typer.Option(help="rdp, prv, pld or all.")] = "rdp",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sampling_rate: Annotated[
        float | None, typer.Option("--sampling-rate", help="q in (0, 1].")
    ] = None,
    noise_multiplier: Annotated[
        float | None,
        typer.Option(
            "--noise-multiplier",
            help="z > 0: noise std ÷ clip norm C, as in run configs (a fixed cohort is accounted "
            "under replace-one, sensitivity 2C). --dp-sgd-canaries: the claim, default 1.",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampled Gaussian steps T.")] = None,
    sampling: Annotated[
        str, typer.Option(help="poisson or fixed (without replacement).")
    ] = "poisson",
    population: Annotated[
        int | None, typer.Option(help="Population size (with --sampling fixed).")
    ] = None,
    empirical: Annotated[
        bool, typer.Option("--empirical", help="Canary audit: a lower bound on ε.")
    ] = False,
    canaries: Annotated[
        int | None,
        typer.Option(help="Canaries (default 1000 with --empirical, 200 with --dp-sgd-canaries)."),
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the empirical bound.")] = 0.95,
    dp_sgd_canaries: Annotated[
        bool,
        typer.Option(
            "--dp-sgd-canaries",
            help="Record-level DP-SGD canary audit (no RUN): ε lower bound vs the accountant's.",
        ),
    ] = False,
    canary_kind: Annotated[
        str | None, typer.Option(help="mislabelled (default) or gradient (Dirac, white-box).")
    ] = None,
    trainer: Annotated[
        str | None, typer.Option(help="DP-SGD of the canary audit: opacus (default) or fedguard.")
    ] = None,
    actual_noise_multiplier: Annotated[
        float | None,
        typer.Option(help="Noise really added (default: the claimed z; 0 = broken mechanism)."),
    ] = None,
    clip_norm: Annotated[
        float | None, typer.Option(help="Per-sample clip norm C (default 10).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="DP-SGD epochs (default 30).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Expected batch size (default 32).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the canary audit (default 0).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory for the canary audit's JSON and plot.")
    ] = None,
    canary_unit: Annotated[
        str,
        typer.Option(
            help="--empirical: auto (the run's privacy unit), client, or user (canary users "
            "spread over silos, for ULDP-AVG runs)."
        ),
    ] = "auto",
    silos_per_canary: Annotated[
        int | None,
        typer.Option(
            help="--empirical with user canaries: silos each canary user is in (default 3)."
        ),
    ] = None,
) -> None:
    """ε of a run from its privacy ledger, of a sampled-Gaussian setting (calculator), or a
    DP-SGD canary audit (--dp-sgd-canaries)."""
    from fedguard.cli.audit_command import audit_command
    from fedguard.cli.sample_canary_command import SampleCanaryOptions

    options = SampleCanaryOptions(
        canary_kind, trainer, actual_noise_multiplier, clip_norm, epochs, batch_size, seed, out_dir
    )

    audit_command(
        run,
        delta,
        accountant,
        as_json,
        sampling_rate,
        noise_multiplier,
        steps,
        sampling,
        population,
        empirical,
        canaries,
        confidence,
        dp_sgd_canaries,
        options,
        canary_unit=canary_unit,
        silos_per_canary=silos_per_canary,
    )


@app.command()
def calibrate(
    target_epsilon: Annotated[float, typer.Option("--target-epsilon", help="Target ε > 0.")],
    sampling_rate: Annotated[float, typer.Option("--sampling-rate", help="q in (0, 1].")],
    steps: Annotated[int, typer.Option(help="Number of sampled Gaussian steps T.")],
    delta: Annotated[float, typer.Option(help="δ in (0, 1).")] = 1e-5,
    sampling: Annotated[
        str, typer.Option(help="poisson or fixed (without replacement).")
    ] = "poisson",
    population: Annotated[
        int | None, typer.Option(help="Population size (with --sampling fixed).")
    ] = None,
    accountant: Annotated[
        str,
        typer.Option(help="rdp, prv, pld, or all (the smallest z meeting the target under each)."),
    ] = "rdp",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The smallest noise multiplier (noise std ÷ clip norm, as in run configs) meeting a target
    (ε, δ)."""
    from fedguard.cli.calibrate_command import calibrate_command

    calibrate_command(
        target_epsilon, delta, sampling_rate, steps, sampling, population, accountant, as_json
    )


@app.command()
def verify(
    run: Annotated[Path, typer.Argument(help="Run directory to replay.")],
    rounds: Annotated[
        int | None,
        typer.Option(help="Check K rounds drawn at random (replays the prefix up to the last)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw of --rounds (pick your own).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay a run from its spec on CPU and compare records, ledger, model and summary bit for
    bit (exit 0 matched, 1 differed, 2 unusable)."""
    from fedguard.cli.verify_command import verify_command

    status = verify_command(run, rounds, seed, as_json)
    if status:  # SystemExit, not typer.Exit: main() runs click with standalone_mode=False,
        sys.exit(status)  # which returns an Exit's code instead of exiting with it


@app.command()
def sign(run: Annotated[Path, typer.Argument(help="Run directory to sign.")]) -> None:
    """Sign a run's files (SHA-256 manifest) with your Ed25519 key (see keys generate)."""
    from fedguard.cli.sign_command import sign_command

    sign_command(run)


@keys_app.command("generate")
def keys_generate(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Create your signing key in $FEDGUARD_KEY_DIR (default ~/.config/fedguard), owner-only."""
    from fedguard.cli.sign_command import keys_generate_command

    keys_generate_command(force)


@list_app.command("components")
def list_components() -> None:
    """Every registered component name, by kind."""
    from fedguard.cli.tables import components_table

    out.print(components_table())


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="cifar10 or cifar100.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Cache directory (default $FEDGUARD_DATA).")
    ] = None,
) -> None:
    """Download an official archive over HTTPS (resumable), verify its MD5 and extract it."""
    from fedguard.cli.data_command import fetch_command

    fetch_command(name, directory)


@data_app.command("list")
def data_list(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Cache directory (default $FEDGUARD_DATA).")
    ] = None,
) -> None:
    """Datasets in the cache: ready, partially downloaded or absent."""
    from fedguard.cli.data_command import list_command

    list_command(directory)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 on success, 1 on a failed outcome, 2 on a usage error
    or bad input (one sentence, no traceback), 130 on Ctrl-C."""
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (``main`` without ``sys.exit``, for tests)."""
    from fedguard.cli.exit_codes import INTERRUPTED, USAGE, click_usage_message, one_line
    from fedguard.errors import Interrupted

    try:
        status = app(args=argv, standalone_mode=False)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {one_line(str(exc))}", highlight=False, soft_wrap=True)
        return USAGE
    except Interrupted as exc:
        err.print(f"interrupted — {one_line(str(exc))}", highlight=False, soft_wrap=True)
        return INTERRUPTED
    except KeyboardInterrupt:
        err.print("interrupted.", highlight=False)
        return INTERRUPTED
    except Exception as exc:
        # usage errors of whichever click is installed (typer vendors its own copy)
        usage = click_usage_message(exc)
        if usage is None:
            raise
        message, code = usage
        err.print(f"[bold red]error:[/] {one_line(message)}", highlight=False, soft_wrap=True)
        return code
    if status == INTERRUPTED:  # typer turns a KeyboardInterrupt into a return value of 130
        err.print("interrupted.", highlight=False)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    main()
