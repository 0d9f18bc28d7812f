"""``fedguard audit --dp-sgd-canaries``: a record-level DP-SGD canary audit (no run directory).

Trains the small digits MLP once with DP-SGD and one-run canaries
(:func:`~fedguard.audit.sample_canaries.sample_canary_audit` — mislabelled input
canaries, Opacus or fedguard's own DP-SGD; or
:func:`~fedguard.audit.sample_canaries.gradient_canary_audit` — white-box Dirac gradient
canaries, Opacus), then prints the one-run ε lower bound next to the accountants' ε upper bound
for the *claimed* noise multiplier. ``--actual-noise-multiplier`` makes the optimizer add other
noise than is claimed (0 simulates a broken mechanism whose accounting still claims
``--noise-multiplier``), the case an audit must catch.

Conventions are those of :mod:`fedguard.audit.sample_canaries`: the primary upper bound
is Opacus' RDP accountant (``ratio = lower / upper``); fedguard's own ``rdp`` (and with
``--accountant prv|pld|all`` those accountants) on the same ``sampled_gaussian`` event is shown
beside it. With ``--out DIR`` the result (with the per-canary scores and inclusion truth) is
written atomically to ``DIR/dp_sgd_canary_audit.json`` and a histogram of the scores of inserted
vs. held-out canaries to ``DIR/dp_sgd_canary_scores.png``.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*. arXiv:2305.08846.
Nasr, M. et al. (2023). Tight auditing of differentially private machine learning. *USENIX
Security 2023* (Dirac gradient canaries).
Jagielski, M., Ullman, J. and Oprea, A. (2020). Auditing differentially private machine
learning: how private is private SGD? *NeurIPS 2020* (mislabelled canary examples).
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from fedguard.errors import UserError

if TYPE_CHECKING:
    from fedguard.audit.sample_canaries import SampleCanaryConfig

CANARY_KINDS = ("mislabelled", "gradient")
TRAINERS = ("opacus", "fedguard")
#: Training samples of the audit (fixed): the digits data set has 1,797 images.
N_TRAIN = 500
N_DIGITS = 1797
#: First-layer rows of the audited MLP; Dirac canaries need one weight each on 3 zero pixels.
HIDDEN_UNITS = 256
DEFAULT_CANARIES = 200
RESULT_FILE = "dp_sgd_canary_audit.json"
FIGURE_FILE = "dp_sgd_canary_scores.png"


@dataclass(frozen=True)
class SampleCanaryOptions:
    """The options only ``--dp-sgd-canaries`` uses; ``None`` = not given (its default applies)."""

    canary_kind: str | None = None
    trainer: str | None = None
    actual_noise_multiplier: float | None = None
    clip_norm: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    out: Path | None = None

    def given(self) -> list[str]:
        """The command-line names of the options that were given."""
        names = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return ["--" + name.replace("_", "-") for name in names]


def _finite(value: float, option: str, positive: bool) -> None:
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise UserError(f"{option} must be a finite number {bound} (got {value!r}).")


def build_config(
    options: SampleCanaryOptions,
    noise_multiplier: float | None,
    canaries: int | None,
    confidence: float,
    delta: float | None,
) -> SampleCanaryConfig:
    """Check every option (one sentence naming it) and return the ``SampleCanaryConfig``."""
    from fedguard.audit.sample_canaries import SampleCanaryConfig

    kind = options.canary_kind or "mislabelled"
    if kind not in CANARY_KINDS:
        raise UserError(f"--canary-kind must be 'mislabelled' or 'gradient' (got {kind!r}).")
    trainer = options.trainer or "opacus"
    if trainer not in TRAINERS:
        raise UserError(f"--trainer must be 'opacus' or 'fedguard' (got {trainer!r}).")
    if kind == "gradient" and trainer != "opacus":
        raise UserError("--trainer must be 'opacus' with --canary-kind gradient (white-box).")
    m = DEFAULT_CANARIES if canaries is None else canaries
    most = 3 * HIDDEN_UNITS if kind == "gradient" else N_DIGITS - N_TRAIN
    if not 2 <= m <= most:
        raise UserError(
            f"--canaries must be an integer from 2 to {most} with --canary-kind {kind} (got {m})."
        )
    if not (0 < confidence < 1):
        raise UserError(f"--confidence must be in (0, 1) (got {confidence!r}).")
    audit_delta = 1e-5 if delta is None else delta
    if not (0 < audit_delta <= 1 / (2 * m)):
        raise UserError(
            f"--delta must be in (0, 1/(2·canaries)] = (0, {1 / (2 * m):.3g}] for the one-run "
            f"bound (got {audit_delta!r})."
        )
    claimed = 1.0 if noise_multiplier is None else noise_multiplier
    _finite(claimed, "--noise-multiplier", positive=True)
    actual = options.actual_noise_multiplier
    if actual is not None:
        _finite(actual, "--actual-noise-multiplier", positive=False)
    clip_norm = 10.0 if options.clip_norm is None else options.clip_norm
    _finite(clip_norm, "--clip-norm", positive=True)
    for name, value in (("--epochs", options.epochs), ("--batch-size", options.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be an integer >= 1 (got {value}).")
    seed = 0 if options.seed is None else options.seed
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed must be an integer from 0 to 2**32 - 1 (got {seed}).")
    return SampleCanaryConfig(
        n_canaries=m,
        n_train=N_TRAIN,
        hidden_units=HIDDEN_UNITS,
        epochs=30 if options.epochs is None else options.epochs,
        batch_size=32 if options.batch_size is None else options.batch_size,
        clip_norm=clip_norm,
        noise_multiplier=claimed,
        actual_noise_multiplier=actual,
        delta=audit_delta,
        confidence=confidence,
        trainer=trainer,  # type: ignore[arg-type]  # checked against TRAINERS above
    )


def run_sample_canary_audit(
    options: SampleCanaryOptions,
    noise_multiplier: float | None,
    canaries: int | None,
    confidence: float,
    delta: float | None,
    accountant: str,
) -> tuple[dict[str, Any], NDArray[np.float64], NDArray[np.bool_]]:
    """Run the audit; return the summary, the per-canary scores and the inclusion truth."""
    from fedguard.audit.sample_canaries import gradient_canary_audit, sample_canary_audit
    from fedguard.cli.accounting_output import accountant_names, epsilon_per_accountant
    from fedguard.privacy.events import sampled_gaussian

    names = accountant_names(accountant)
    cfg = build_config(options, noise_multiplier, canaries, confidence, delta)
    kind = options.canary_kind or "mislabelled"
    seed = 0 if options.seed is None else options.seed
    audit = gradient_canary_audit if kind == "gradient" else sample_canary_audit
    start = time.perf_counter()
    outcome = audit(cfg, seed=seed)
    seconds = time.perf_counter() - start
    upper = {"opacus_rdp": outcome.epsilon_upper_opacus, "rdp": outcome.epsilon_upper_fedguard}
    others = tuple(n for n in names if n != "rdp")
    if others:
        event = sampled_gaussian(outcome.sampling_rate, cfg.noise_multiplier, steps=outcome.steps)
        for name, entry in epsilon_per_accountant(event, cfg.delta, others).items():
            upper[name] = entry.get("epsilon", f"unsupported: {entry.get('unsupported')}")
    details = outcome.result.details
    lower, claimed_upper = outcome.epsilon_lower, outcome.epsilon_upper_opacus
    summary = {
        "audit": "dp_sgd_canaries",
        "canary_kind": kind,
        "trainer": cfg.trainer,
        "method": outcome.result.method,
        "epsilon_lower_bound": lower,
        "epsilon_upper_bound": claimed_upper,
        "upper_source": "opacus rdp accountant (claimed noise multiplier)",
        "upper_by_accountant": upper,
        "ratio": outcome.ratio,
        "lower_exceeds_upper": bool(lower > claimed_upper),
        "ceiling": outcome.ceiling,
        "delta": cfg.delta,
        "confidence": cfg.confidence,
        "n_canaries": cfg.n_canaries,
        "n_included": int(outcome.included.sum()),
        "n_guesses": details.get("n_guesses"),
        "n_correct": details.get("n_correct"),
        "noise_multiplier": cfg.noise_multiplier,
        "actual_noise_multiplier": cfg.trained_noise_multiplier,
        "clip_norm": cfg.clip_norm,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "n_train": cfg.n_train,
        "sampling_rate": outcome.sampling_rate,
        "steps": outcome.steps,
        "seed": seed,
        "test_accuracy": outcome.test_accuracy,
        "audit_seconds": seconds,
        "result": outcome.result.as_dict(),
    }
    return summary, outcome.scores, outcome.included


def write_outputs(
    out: Path, summary: dict[str, Any], scores: NDArray[np.float64], included: NDArray[np.bool_]
) -> list[str]:
    """Write the result JSON (with scores and truth) and the score histogram, each atomically."""
    from fedguard.cli.accounting_output import jsonable
    from fedguard.storage.atomic import write_bytes, write_text

    record = {**summary, "scores": scores.tolist(), "included": included.tolist()}
    result_path, figure_path = out / RESULT_FILE, out / FIGURE_FILE
    write_text(result_path, json.dumps(jsonable(record), indent=1) + "\n")
    write_bytes(figure_path, score_histogram(summary, scores, included))
    return [str(result_path), str(figure_path)]


def score_histogram(
    summary: dict[str, Any], scores: NDArray[np.float64], included: NDArray[np.bool_]
) -> bytes:
    """PNG: scores of inserted vs. held-out canaries (well separated = privacy leaked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.histogram_bin_edges(scores, bins=30).tolist()  # (31,)
    ax.hist(scores[included], bins=bins, alpha=0.6, label="inserted")
    ax.hist(scores[~included], bins=bins, alpha=0.6, label="held out")
    ax.set_xlabel(f"canary score ({summary['canary_kind']})")
    ax.set_ylabel("canaries")
    ax.set_title(
        f"ε ≥ {summary['epsilon_lower_bound']:.3g} ({100 * summary['confidence']:g}%), "
        f"claimed ε ≤ {summary['epsilon_upper_bound']:.3g}",
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def print_table(summary: dict[str, Any], console: Console) -> None:
    from fedguard.cli.accounting_output import format_number as _number

    confidence = f"{100 * summary['confidence']:g}%"
    table = Table(
        title=f"DP-SGD canary audit ({summary['canary_kind']} canaries, {summary['trainer']})"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row(f"ε lower bound (one-run, {confidence})", _number(summary["epsilon_lower_bound"]))
    table.add_row("ε upper bound (Opacus RDP, claimed z)", _number(summary["epsilon_upper_bound"]))
    for name, eps in summary["upper_by_accountant"].items():
        if name != "opacus_rdp":
            shown = eps if isinstance(eps, str) else _number(eps)
            table.add_row(f"ε upper bound (fedguard {name})", shown)
    table.add_row("ratio lower / upper", f"{summary['ratio']:.3f}")
    table.add_row("largest certifiable ε (ceiling)", _number(summary["ceiling"]))
    table.add_row("δ", f"{summary['delta']:g}")
    table.add_row("canaries (inserted)", f"{summary['n_canaries']} ({summary['n_included']})")
    table.add_row("confidence", confidence)
    table.add_row(
        "noise multiplier claimed / actual",
        f"{summary['noise_multiplier']:g} / {summary['actual_noise_multiplier']:g}",
    )
    table.add_row("sampling rate q, steps", f"{summary['sampling_rate']:.4g}, {summary['steps']}")
    table.add_row("test accuracy", f"{summary['test_accuracy']:.3f}")
    console.print(table)
    if summary["lower_exceeds_upper"]:
        console.print(
            f"[bold red]CONTRADICTION:[/] the lower bound exceeds the accountant's ε — the "
            f"mechanism or its accounting is wrong (with {confidence} confidence)."
        )
    elif summary["epsilon_upper_bound"] > summary["ceiling"]:
        from fedguard.privacy.audit.summary import CEILING_NOTE

        console.print(CEILING_NOTE)
    for path in summary.get("written", []):
        console.print(f"wrote {path}", soft_wrap=True, highlight=False)


def sample_canary_command(
    options: SampleCanaryOptions,
    dp_sgd_canaries: bool,
    not_with_canaries: dict[str, bool],
    noise_multiplier: float | None,
    canaries: int | None,
    confidence: float,
    delta: float | None,
    accountant: str,
    as_json: bool,
) -> None:
    """Run the audit, write ``--out`` if given, print the table (or one JSON object).

    ``not_with_canaries`` names the other ``audit`` inputs (a RUN, ``--empirical``, calculator
    flags) with whether each was given; any of them, or a canary option without
    ``--dp-sgd-canaries``, is refused with one sentence.
    """
    from fedguard.cli.accounting_output import jsonable

    if not dp_sgd_canaries:
        raise UserError(f"{options.given()[0]} is only used with --dp-sgd-canaries.")
    for name, present in not_with_canaries.items():
        if present:
            raise UserError(
                f"--dp-sgd-canaries cannot be combined with {name} (it trains its own model)."
            )
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        raise UserError(f"--out must be a directory (got the file {options.out}).")
    summary, scores, included = run_sample_canary_audit(
        options, noise_multiplier, canaries, confidence, delta, accountant
    )
    if options.out is not None:
        summary["written"] = write_outputs(options.out, summary, scores, included)
    if as_json:
        print(json.dumps(jsonable(summary)))
    else:
        print_table(summary, Console())
