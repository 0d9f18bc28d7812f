"""Rich tables for the terminal."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fedguard import registry
from fedguard.metrics.attack_headlines import headline
from fedguard.metrics.test_accuracy import accuracy_text, backdoor_text
from fedguard.safe_text import markup_safe


def components_table() -> Table:
    table = Table(title="Registered components")
    table.add_column("kind", style="bold")
    table.add_column("names")
    for kind in registry.KINDS:
        table.add_row(kind, ", ".join(registry.names(kind)) or "—")
    return table


def _fmt(value: Any) -> str:
    """A cell value as inert text: a run folder may come from someone else, so markup and
    terminal escape codes in its strings are shown, not interpreted."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return markup_safe(str(value))


def rounds_table(records: list[dict[str, Any]], limit: int = 12) -> Table:
    table = Table(title="Rounds")
    cols = ["round", "clients", "test_accuracy", "test_loss", "flagged", "seconds"]
    extra = [k for k in ("backdoor_success", "epsilon") if any(k in r for r in records)]
    for c in cols + extra:
        table.add_column(c.replace("_", " "), justify="right")
    shown = records if len(records) <= limit else records[: limit // 2] + records[-limit // 2 :]
    if len(shown) < len(records):  # say what is not shown and where it is
        first, last = records[limit // 2].get("round"), records[-limit // 2 - 1].get("round")
        table.caption = f"rounds {first}–{last} not shown: every round is in rounds.jsonl"
    for r in shown:
        row = [r.get(c) for c in cols + extra]
        row[4] = len(r.get("flagged") or [])
        table.add_row(*(_fmt(v) for v in row))
    return table


# A run summary in the order a reader asks: what ran, how well it learned, what attacked it,
# what privacy it had, then cost; anything else after, as stored.
SUMMARY_ORDER = (
    "name",
    "status",
    "spec_hash",
    "rounds_completed",
    "final_test_accuracy",
    "final_test_loss",
    "backdoor_success",
    "malicious_clients",
    "free_rider_clients",
    "privacy_epsilon",
    "dp_noise",
    "saved_updates",
    "median_train_seconds",
    "wall_seconds",
)


#: sizes the accuracy and backdoor lines state (their intervals and chance), not repeated as rows
SHOWN_IN_ACCURACY = (
    "test_samples",
    "test_sequences",
    "n_classes",
    "majority_share",
    "triggered_samples",
)


def ordered_summary(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    known = [(k, summary[k]) for k in SUMMARY_ORDER if k in summary]
    rest = [(k, v) for k, v in summary.items() if k not in SUMMARY_ORDER]
    return known + rest


def summary_table(
    summary: dict[str, Any],
    title: str = "Run summary",
    *,
    epsilon: tuple[float, float, str] | None,
) -> Table:
    """The run summary ordered by meaning; ``epsilon`` = (ε, δ, unit) of a DP run from its
    ledger, None for a run in which no DP mechanism ran (:func:`run_epsilon`)."""
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    if epsilon is not None:
        eps, delta, unit = epsilon
        summary = {
            **summary,
            "privacy_epsilon": f"ε = {eps:.4g} at δ = {delta:g} (rdp accountant, {unit}-level)",
        }
    elif "dp_noise" in summary:  # the field names the noise source of a DP run; this one had none
        summary = {**summary, "dp_noise": "none: no DP mechanism ran"}
    accuracy = accuracy_text(summary)
    if accuracy is not None:
        summary = {**summary, "final_test_accuracy": accuracy}
    backdoor = backdoor_text(summary)
    if backdoor is not None:
        summary = {**summary, "backdoor_success": backdoor}
    summary = {k: v for k, v in summary.items() if k not in SHOWN_IN_ACCURACY}
    for k, v in ordered_summary(summary):
        if isinstance(v, dict):
            continue
        table.add_row(_fmt(str(k).replace("_", " ")), _fmt(v))
    return table


def privacy_attacks_table(summary: dict[str, Any]) -> Table | None:
    """One row per privacy attack of the run: its headline result beside the baseline a trivial
    attacker gets and the caveats (:mod:`fedguard.metrics.attack_headlines`); None without
    privacy attacks."""
    attacks = summary.get("privacy_attacks")
    if not isinstance(attacks, dict) or not attacks:
        return None
    table = Table(title="Privacy attacks (mean over the rounds each attack observed)")
    table.add_column("attack", style="bold")
    table.add_column("result")
    table.add_column("baseline and caveats", style="dim")
    for name, metrics in attacks.items():
        if isinstance(metrics, dict):
            result, notes = headline(metrics)
            table.add_row(_fmt(name), _fmt(result), _fmt(notes))
    table.caption = "every metric of every attack: complete.json (privacy_attacks)"
    return table


def print_summary(console: Any, summary: dict[str, Any], spec: Any, ledger: dict[str, Any]) -> None:
    """The run summary, then the privacy attacks' headlines where the run had any."""
    console.print(summary_table(summary, epsilon=run_epsilon(spec, ledger)))
    attacks = privacy_attacks_table(summary)
    if attacks is not None:
        console.print(attacks)


def run_epsilon(spec: Any, ledger: dict[str, Any]) -> tuple[float, float, str] | None:
    """(ε, δ, privacy unit) of a run that ran a DP mechanism, else None; the unit is the
    headline level's ("client", "user" or "record"), which ε protects."""
    from fedguard.matrix.cell import privacy_headline

    headline = privacy_headline(spec, ledger)
    if headline is None:
        return None
    eps, level = headline
    return eps, spec.privacy.delta, level


def partition_table(partition: list[dict[str, Any]]) -> Table:
    """Samples and label histogram per client."""
    table = Table(title="Partition (samples and label histogram per client)")
    table.add_column("client", justify="right")
    table.add_column("samples", justify="right")
    n_classes = len(partition[0]["labels"]) if partition else 0
    for k in range(n_classes):
        table.add_column(str(k), justify="right", style="dim")
    for row in partition:
        table.add_row(_fmt(row["client"]), _fmt(row["samples"]), *map(_fmt, row["labels"]))
    return table
