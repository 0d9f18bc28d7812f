"""The first screen of a run report: what ran, how well it learned, what attacked it, what
privacy it had, and the caveats — in one paragraph, before the evidence."""

from __future__ import annotations

from html import escape
from typing import Any

from fedguard.metrics.attack_headlines import headline
from fedguard.metrics.detection import run_detection
from fedguard.metrics.test_accuracy import accuracy_text, backdoor_text
from fedguard.report.accountants import read_audit
from fedguard.report.html import bullet_list
from fedguard.report.run_sections import _component
from fedguard.storage.run_dir import RunDirectory


def setup_line(spec: dict[str, Any]) -> str:
    a = spec["attack"]
    attack = _component(a["model_attack"]) if a["model_attack"] else _component(a["data_attack"])
    attackers = f"{a['n_malicious']} attackers ({attack})" if a["n_malicious"] else "no attackers"
    return (
        f"Setup: {_component(spec['data']['dataset'])} data, {_component(spec['data']['partition'])} "
        f"partition, {_component(spec['model'])} model, {spec['clients']['n_clients']} clients "
        f"({attackers}), {spec['rounds']} rounds, seed {spec['seed']}."
    )


def answer(
    run: RunDirectory, records: list[dict[str, Any]], summary: dict[str, Any], privacy_line: str
) -> str:
    parts = []
    acc = summary.get("final_test_accuracy")
    if acc is not None:
        parts.append(
            f"Final test accuracy after {summary.get('rounds_completed')} rounds: "
            f"{accuracy_text(summary) or f'{acc:.3f}'}."
        )
    elif records:
        parts.append(f"Interrupted after {len(records)} rounds.")
    if summary.get("malicious_clients"):
        det = run_detection(records)
        if "detection_tpr" in det:
            parts.append(
                f"The defense flagged {det['detection_tpr']:.0%} of malicious participations at a "
                f"{det.get('detection_fpr', 0):.0%} false-positive rate."
            )
    if summary.get("backdoor_success") is not None:
        parts.append(f"Backdoor success {backdoor_text(summary)}.")
    parts.append(privacy_line)
    return " ".join(parts)


def attack_lines(summary: dict[str, Any]) -> list[str]:
    """One line per privacy attack: its result, then what a trivial attacker gets."""
    lines = []
    for name, metrics in (summary.get("privacy_attacks") or {}).items():
        if isinstance(metrics, dict):
            result, notes = headline(metrics)
            lines.append(f"{name}: {result} — {notes}.")
    return lines


def caveats(run: RunDirectory, summary: dict[str, Any]) -> list[str]:
    out = ["One run, one seed: figures carry no interval over training randomness."]
    audit = read_audit(run)
    if audit is not None:
        ceiling, upper = (
            audit.get("ceiling"),
            audit.get("epsilon_upper", audit.get("epsilon_upper_bound")),
        )
        if isinstance(ceiling, int | float) and isinstance(upper, int | float) and ceiling < upper:
            out.append(
                f"The canary audit can certify at most ε = {ceiling:.3g}, below {upper:.3g}, the "
                "smallest of the accountants' bounds: it could not have refuted the claim (see "
                "Privacy)."
            )
    if summary.get("saved_updates"):
        out.append("Per-round client updates were saved: they are sensitive (owner-only).")
    return out


def summary_html(
    run: RunDirectory, records: list[dict[str, Any]], summary: dict[str, Any], privacy_line: str
) -> str:
    spec = run.spec().canonical()
    return (
        f'<p class="answer">{escape(answer(run, records, summary, privacy_line))}</p>'
        + _attacks_html(attack_lines(summary))
        + f'<p class="setup-line">{escape(setup_line(spec))}</p>'
        '<div class="caveats">' + bullet_list(caveats(run, summary)) + "</div>"
    )


def _attacks_html(lines: list[str]) -> str:
    """The privacy attacks' lines as a list under the answer (a paragraph of them is a wall)."""
    if not lines:
        return ""
    head = "Privacy attacks (each result, then what a trivial attacker gets):"
    return f'<p class="attacks-head">{escape(head)}</p>' + bullet_list(lines)
