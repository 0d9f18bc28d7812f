"""``fedguard contrib RUN``: per-client contribution values of a finished run.

Prints a table (client, value, interval, rank, flag) and the audit checks, writes
``contrib_<method>_<utility>.csv`` / ``.json`` / ``.png`` (bar chart with error bars) into the run
directory, plus ``contributions.csv`` (the latest result, read by ``fedguard report``), or prints
the JSON with ``--json``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedguard import registry
from fedguard.errors import ConfigError, UserError
from fedguard.storage.run_dir import RunDirectory
from fedguard.valuation.audit import AuditReport, audit, efficiency_gap, zero_update_clients
from fedguard.valuation.base import Scores
from fedguard.valuation.game import Game, RoundGame
from fedguard.valuation.training_seeds import (
    MAX_TRAINING_SEEDS,
    SEEDS_DIR,
    combine_over_seeds,
    seed_runs,
)
from fedguard.valuation.utilities import (
    BUILDERS,
    LoadedRun,
    build_game,
    duplicate_pairs,
    load_run,
)

#: Largest n for which ``exact`` is the default method, per rebuild strategy (issue 8).
EXACT_DEFAULT_MAX = {"retrain": 8, "reconstruct-one-round": 12, "reconstruct-multi-round": 12}


def default_method(n_clients: int, rebuild: str) -> str:
    return "exact" if n_clients <= EXACT_DEFAULT_MAX.get(rebuild, 12) else "stratified"


def valuate(
    game: Game | RoundGame,
    method: str,
    budget: int | None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> Scores:
    """Resolve ``method`` in the registry and fit it with a seeded generator."""
    kwargs = dict(params or {})
    if budget is not None:
        if not _takes_budget(method):
            raise ConfigError(
                f"method {method!r} does not take a budget; drop --budget or use a sampling "
                "method (permutation, stratified, kernel_shap, banzhaf, beta_shapley, gtg_shapley)."
            )
        kwargs["budget"] = budget
    estimator = registry.create("valuation", method, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    return estimator.fit(game, generator)  # type: ignore[no-any-return]


def _takes_budget(method: str) -> bool:
    cls = registry.get("valuation", method)
    return dataclasses.is_dataclass(cls) and "budget" in {f.name for f in dataclasses.fields(cls)}


def rows(scores: Scores, report: AuditReport) -> list[dict[str, Any]]:
    ranks = scores.ranks().tolist()
    return [
        {
            "client": i,
            "value": float(scores.values[i]),
            "std_error": float(scores.std_errors[i]),
            "lower": float(scores.lower[i]),
            "upper": float(scores.upper[i]),
            "rank": int(ranks[i]),
            "flag": report.flags[i],
        }
        for i in range(scores.n_players)
    ]


def to_csv(table: Sequence[dict[str, Any]]) -> str:
    header = ["client", "value", "std_error", "lower", "upper", "rank", "flag"]
    lines = [",".join(header)]
    for r in table:
        lines.append(",".join(_fmt(r[h]) for h in header))
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


def bar_chart_png(scores: Scores, title: str) -> bytes:
    """Bar chart of values with interval error bars (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = scores.n_players
    values = scores.values.numpy()
    lower = (scores.values - scores.lower).clamp(min=0).nan_to_num(posinf=0.0).numpy()
    upper = (scores.upper - scores.values).clamp(min=0).nan_to_num(posinf=0.0).numpy()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * n + 2), 3.2), dpi=120)
    colors = ["#c0392b" if v < 0 else "#2c7fb8" for v in values]
    ax.bar(range(n), values, yerr=[lower, upper], color=colors, capsize=3)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(n))
    ax.set_xlabel("client")
    ax.set_ylabel(f"value ({scores.target})")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def surrogate_notes(run: LoadedRun, rebuild: str) -> list[str]:
    """Where a reconstruction values a surrogate of the run rather than the run itself."""
    if rebuild == "retrain":
        return []
    spec = run.spec
    notes = []
    aggregator = spec.defense.aggregator.name
    if aggregator != "mean" or spec.defense.preaggregators:
        notes.append(
            f"the run aggregated with {aggregator!r}; the reconstruction uses the FedAvg mean "
            "over each coalition (a surrogate game)"
        )
    if spec.server.optimizer != "sgd":
        notes.append(
            f"the run's {spec.server.optimizer!r} server optimizer is approximated by "
            "θ + learning_rate · aggregate"
        )
    if spec.defense.server_transforms:
        notes.append("server transforms (e.g. central DP noise) are not replayed")
    return notes


def contrib_command(
    run_dir: Path | str,
    method: str | None,
    budget: int | None,
    utility: str,
    as_json: bool,
    rebuild: str = "reconstruct-multi-round",
    seed: int = 0,
    threshold: float = 0.1,
    training_seeds: int = 1,
    compare: Sequence[str] = (),
) -> int:
    """Value every client of a finished run; returns the exit status (0).

    User mistakes (no run directory, no saved updates for a reconstruction, unknown method,
    a budget below n, exact on too many clients) raise :class:`fedguard.errors.UserError` with one
    sentence; nothing is written in that case.
    """
    from rich.console import Console
    from rich.table import Table

    from fedguard.storage import atomic

    if rebuild not in BUILDERS:
        raise ConfigError(f"rebuild must be one of {', '.join(BUILDERS)}; got {rebuild!r}.")
    if budget is not None and budget < 1:
        raise ConfigError(f"budget must be a positive number of utility evaluations; got {budget}.")
    if not 1 <= training_seeds <= MAX_TRAINING_SEEDS:
        raise ConfigError(
            f"training-seeds must be an integer in 1..{MAX_TRAINING_SEEDS}; got {training_seeds}."
        )
    path = Path(run_dir)
    run = load_run(path)
    chosen = method or default_method(run.n_clients, rebuild)
    for name in (chosen, *compare):
        if name not in registry.names("valuation"):
            raise ConfigError(
                f"unknown method {name!r}; valid methods: {', '.join(registry.names('valuation'))}."
            )
    game = build_game(run, rebuild, utility)
    scores = valuate(game, chosen, budget, seed)
    gain = None
    if training_seeds > 1:
        options = (chosen, budget, rebuild, utility, seed)
        scores, gain = value_over_seeds(path, run, scores, game, options, training_seeds)
    # other methods on the same game (its cache is shared) for the rank agreement
    others = [
        valuate(game, name, budget if _takes_budget(name) else None, seed) for name in compare
    ]
    duplicates = duplicate_pairs(run.rounds)
    report = audit(
        scores,
        game,
        threshold=threshold,
        duplicates=duplicates,
        others=others,
        total_gain=gain,
        zero_update=zero_update_clients(run.rounds),
    )
    table = rows(scores, report)
    notes = surrogate_notes(run, rebuild)
    interval = str(scores.info.get("interval", ""))
    if interval.startswith("units of one block"):
        notes.append(f"intervals are from {interval}: raise --budget for independent blocks")
    elif interval:
        notes.append(f"values are means and intervals are {interval} (runs in {path / SEEDS_DIR})")
    payload = {
        "run": str(path),
        "complete": RunDirectory(path).complete,
        "notes": notes,
        "method": chosen,
        "rebuild": rebuild,
        "utility": utility,
        "split": run.split,
        "seed": seed,
        "scores": scores.to_dict(),
        "audit": report.to_dict(),
        "duplicates": duplicates,
        "clients": table,
    }
    stem = f"contrib_{chosen}_{utility}"
    atomic.write_text(path / f"{stem}.csv", to_csv(table))
    atomic.write_text(path / "contributions.csv", to_csv(table))  # the report's latest result
    atomic.write_text(path / f"{stem}.json", json.dumps(payload, indent=2, default=str) + "\n")
    title = f"{chosen} ({rebuild}, {utility} on {run.split})"
    atomic.write_bytes(path / f"{stem}.png", bar_chart_png(scores, title))
    console = Console()
    if as_json:
        console.print_json(json.dumps(payload, default=str))
        return 0
    pct = round(100 * scores.confidence)
    t = Table(title=f"contributions: {title}")
    # per-client intervals; the flags test all clients together (Holm), so an interval can
    # exclude 0 without a flag: the column says which is which
    for col in ("client", "value", f"{pct}% interval (per client)", "rank", "flag (Holm)"):
        t.add_column(col, justify="left" if col.startswith("flag") else "right")
    for r in table:
        t.add_row(
            str(r["client"]),
            f"{r['value']:.4f}",
            f"[{r['lower']:.4f}, {r['upper']:.4f}]",
            str(r["rank"]),
            r["flag"],
        )
    console.print(t)
    unit = scores.evaluation_unit
    console.print(
        f"utility evaluations: {scores.n_evaluations} ({unit}), queries: {scores.n_queries}; "
        f"v(N) − v(∅) = {report.total_gain:.4f}, efficiency gap = {report.efficiency_gap:.2e}"
        + (" (not an efficient target)" if scores.target != "shapley" else "")
    )
    console.print(report.flag_rule, highlight=False)
    for i, j, gap, ok in report.symmetry:
        verdict = "within one interval width" if ok else "NOT within one interval width"
        console.print(f"duplicate clients {i} and {j}: |Δvalue| = {gap:.4f}, {verdict}")
    for i, value, ok in report.null_players:
        console.print(f"null player {i}: value {value:.4f} ({'ok' if ok else 'VIOLATED'})")
    for a in report.agreements:
        console.print(
            f"rank agreement {a.method_a} vs {a.method_b}: Spearman ρ = {a.spearman:.3f}, "
            f"Kendall τ = {a.kendall:.3f}"
        )
    if not payload["complete"]:
        console.print("note: the run is interrupted; values cover its completed rounds only")
    for note in notes:
        console.print(f"note: {note}")
    console.print(f"wrote {path / stem}.csv, .json and .png (and contributions.csv)")
    return 0


def value_over_seeds(
    path: Path,
    run: LoadedRun,
    first: Scores,
    game: Game | RoundGame,
    options: tuple[str, int | None, str, str, int],
    n_seeds: int,
) -> tuple[Scores, float]:
    """The valuation repeated on the run retrained with ``n_seeds − 1`` more training seeds
    (:mod:`fedguard.valuation.training_seeds`); ``options`` = method, budget, rebuild, utility,
    estimator seed. Returns the combined scores and the mean total gain ``v(N) − v(∅)`` over the
    runs (the efficiency target of the mean)."""
    from rich.console import Console

    method, budget, rebuild, utility, seed = options

    err = Console(stderr=True)

    def progress(k: int, total: int) -> None:
        err.print(f"training seed {k}/{total}", highlight=False)

    runs = seed_runs(path, run, n_seeds, progress)
    per_seed, gains = [first], [efficiency_gap(first, game)[1]]
    for other in runs[1:]:
        other_game = build_game(other, rebuild, utility)
        scores = valuate(other_game, method, budget, seed)
        per_seed.append(scores)
        gains.append(efficiency_gap(scores, other_game)[1])
    seeds = [r.simulation.training_seed for r in runs]
    return combine_over_seeds(per_seed, seeds), sum(gains) / len(gains)


def contrib_or_exit(*args: Any, **kwargs: Any) -> int:
    """:func:`contrib_command` for callers that prefer a status to an exception."""
    try:
        return contrib_command(*args, **kwargs)
    except UserError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
