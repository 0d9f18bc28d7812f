"""The privacy section: a privacy statement in the form DP practitioners recommend, then ε over
rounds per accountant, the budget verdict and the empirical audit when present."""

from __future__ import annotations

import json
from typing import Any

from fedguard.report import figures
from fedguard.report.accountants import accountants_html, audit_html, read_audit
from fedguard.report.html import image, key_values, paragraph
from fedguard.storage.run_dir import RunDirectory


def privacy_section(run: RunDirectory) -> tuple[str, str]:
    """(html, one-line finding)."""
    ledger = run.ledger()
    has_events = any(r.get("population") or r.get("clients") for r in ledger.get("rounds", []))
    if not has_events:
        line = "No differential-privacy mechanism ran: the run has no formal privacy guarantee (ε = ∞)."
        return paragraph(line, "statement warn"), line
    from fedguard.privacy.statement import privacy_statement

    spec = run.spec()
    st: dict[str, Any] = privacy_statement(ledger, spec)
    html = (
        '<div class="statement">'
        + key_values(
            [
                ("unit of privacy", st["unit"]),
                ("neighbouring relation", st["neighbouring_relation"]),
                ("trust model", st["trust_model"]),
                ("sampling scheme", st["sampling"]),
                ("accountant", st["accountant"]),
                ("accountant settings", json.dumps(st["accountant_settings"])),
                ("δ", st["delta"]),
                ("ε", st["epsilon"]),
            ]
        )
        + "</div>"
    )
    html += accountants_html(ledger, st["delta"], st["accountant"])
    curves = st.get("epsilon_by_round") or {}
    if curves:
        html += image(
            figures.curves(
                {name: ([0, *range(1, len(v) + 1)], [0.0, *v]) for name, v in curves.items()},
                f"ε at δ = {st['delta']:g}",
                f"ε over rounds, every accountant, from zero (δ = {st['delta']:g})",
                from_zero=True,
            ),
            "ε over rounds for every accountant, from zero",
        )
    if st.get("verdict"):
        html += paragraph(st["verdict"], "good" if st.get("within_budget") else "bad")
    for note in st.get("notes", []):
        html += paragraph(note, "warn")
    audit = read_audit(run)
    if audit is not None:
        html += audit_html(audit)
    return html, privacy_finding(st)


def _split(text: str) -> tuple[str, str]:
    """ "client (one client's data, added or removed)" → ("client", "one client's data, ...")."""
    head, _, rest = str(text).partition(" (")
    return head, rest.removesuffix(")")


def privacy_finding(st: dict[str, Any]) -> str:
    """One plain sentence: ε at δ with its accountant, the unit, the relation, the trust model."""
    level, unit = _split(st["unit"])
    trust, how = _split(st["trust_model"])
    return (
        f"Privacy: ε = {st['epsilon']:.3g} at δ = {st['delta']:g} ({st['accountant']} accountant), "
        f"{level}-level: {unit or level}, {st['neighbouring_relation']} neighbours. "
        f"Trust model: {trust}{f' — {how}' if how else ''}."
    )
