"""ε of a run per accountant, in one table, with why the numbers differ; and what a canary audit
could and could not have shown."""

from __future__ import annotations

import json
import math
from typing import Any

from fedguard.report.html import paragraph, table
from fedguard.storage.run_dir import RunDirectory

# Why each accountant's number is what it is (the same events, different analyses).
WHY = {
    "rdp": (
        "Rényi DP summed over rounds, then converted to (ε, δ) (Mironov 2017; Balle et al. 2020): "
        "a valid upper bound, looser than PLD/PRV because the conversion is not tight."
    ),
    "pld": (
        "privacy-loss distribution composed numerically (Koskela et al. 2020, Google dp-accounting): "
        "near-tight for the same events, up to its discretisation."
    ),
    "prv": (
        "privacy random variables (Gopi et al. 2021, Opacus): near-tight; reported as the estimate "
        "plus its error bound, so it can sit slightly above PLD."
    ),
}


def accountant_rows(ledger: dict[str, Any], delta: float) -> list[list[Any]]:
    """(level, accountant, ε, why) for every level and accountant of a ledger."""
    from fedguard.privacy.budget import ledger_report

    report = ledger_report(ledger, delta)
    rows: list[list[Any]] = []
    for level, entry in report["levels"].items():
        for name, acc in entry["accountants"].items():
            if "unsupported" in acc:
                rows.append(
                    [level, name, "—", f"cannot account these events: {acc['unsupported']}"]
                )
            else:
                rows.append([level, name, float(acc["epsilon"]), WHY.get(name, "")])
    return rows


def accountants_html(ledger: dict[str, Any], delta: float, headline: str) -> str:
    rows = accountant_rows(ledger, delta)
    if not rows:
        return ""
    values = [r[2] for r in rows if isinstance(r[2], float)]
    spread = (
        f" The accountants agree within {max(values) - min(values):.3g} "
        f"({min(values):.4g} to {max(values):.4g}): every one is an upper bound on the same "
        f"mechanism, computed by a different method; the statement quotes {headline}, the "
        "accountant that handles every event type fedguard records."
        if len(values) > 1
        else ""
    )
    return (
        "<h3>ε per accountant</h3>"
        + paragraph(
            f"ε at δ = {delta:g} from the same privacy ledger, by every accountant.{spread}"
        )
        + table(["privacy level", "accountant", "ε", "what it computes (why it differs)"], rows)
    )


def read_audit(run: RunDirectory) -> dict[str, Any] | None:
    """The canary audit's full result (``audit/audit.json``), else the summary ``audit.json``."""
    from fedguard.errors import UserError
    from fedguard.report.paths import inside

    for rel in ("audit/audit.json", "audit.json"):
        f = inside(run.path, rel, "file")
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise UserError(f"{f} is not valid JSON (damaged or not fedguard's).") from None
            if not isinstance(data, dict):
                raise UserError(f"{f} is not a JSON object.")
            return data
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def refutation_sentence(lower: float | None, ceiling: float | None, claimed: float | None) -> str:
    """Whether this audit could have refuted the claimed ε, and whether it did."""
    if lower is None or claimed is None:
        return "Without both bounds the audit cannot be compared with the claim."
    if lower > claimed:
        return (
            f"The audit REFUTES the claim: its lower bound {lower:.3g} exceeds the claimed "
            f"ε = {claimed:.3g}; the mechanism (or its accounting) is broken."
        )
    if ceiling is not None and ceiling < claimed:
        return (
            f"This audit could not have refuted the claim: even with every guess right it "
            f"certifies at most ε = {ceiling:.3g} < {claimed:.3g}. A bug that leaks between "
            f"{ceiling:.3g} and {claimed:.3g} would go unseen; more canaries raise the ceiling."
        )
    return (
        f"The audit could have refuted the claim (its ceiling {ceiling:.3g} ≥ {claimed:.3g}) and "
        f"did not: its lower bound {lower:.3g} is consistent with ε = {claimed:.3g}."
        if ceiling is not None
        else f"The lower bound {lower:.3g} is consistent with ε = {claimed:.3g}."
    )


def audit_html(audit: dict[str, Any]) -> str:
    lower = _num(audit.get("epsilon_lower", audit.get("epsilon_lower_bound")))
    upper = _num(audit.get("epsilon_upper", audit.get("epsilon_upper_bound")))
    ceiling = _num(audit.get("ceiling"))
    single = _num(audit.get("ceiling_all_guesses"))
    rows = [
        ["method", audit.get("method")],
        ["canaries", audit.get("n_canaries", "not recorded")],
        ["confidence", audit.get("confidence")],
        ["δ of the audit", audit.get("delta", "not recorded")],
        ["ε lower bound (empirical)", lower],
        [
            "ceiling (largest ε this design can certify)",
            f"{ceiling:.3g}"
            + (f" (one test without the guess grid: {single:.3g})" if single else "")
            if ceiling is not None
            else "not recorded",
        ],
        [f"ε upper bound ({audit.get('upper_source') or 'accountant'})", upper],
        ["lower / upper", _num(audit.get("ratio"))],
    ]
    body = "".join(
        f"<tr><th>{k}</th><td>{'—' if v is None else (f'{v:.4g}' if isinstance(v, float) else v)}</td></tr>"
        for k, v in rows
    )
    return (
        "<h3>Empirical audit</h3>"
        + f"<table><tbody>{body}</tbody></table>"
        + paragraph(refutation_sentence(lower, ceiling, upper), "statement")
    )
