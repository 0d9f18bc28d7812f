"""Plain-text summary of an :func:`~fedguard.audit.empirical.empirical_audit` result.

For the CLI (``fedguard audit RUN --empirical``) and reports: the lower bound with its method and
confidence, the accountants' upper bound, the ratio, the ceiling, the estimate (marked as not a
bound) and the cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Printed when the accountant's ε exceeds the largest ε the canaries can certify.
CEILING_NOTE = (
    "note: the claimed ε is above what this many canaries can certify; a bug that leaves "
    "ε between the ceiling and the claim cannot be detected (use more canaries)."
)


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{float(value):.3f}"


def describe_empirical_audit(result: Mapping[str, Any]) -> str:
    """A few lines a person reads; states a contradiction between the bounds explicitly."""
    confidence = f"{100 * float(result['confidence']):g}%"
    lines = [
        f"empirical ε lower bound: {_number(result['epsilon_lower'])} "
        f"({result['method'].replace('_', '-')} audit, {confidence} confidence, "
        f"δ = {result['delta']:g}; {result['n_canaries']} canaries, "
        f"{result['n_included']} inserted; this design certifies at most "
        f"{_number(result['ceiling'])})",
    ]
    per = result.get("upper_by_accountant") or {}
    detail = ", ".join(f"{name} {_number(eps)}" for name, eps in sorted(per.items()))
    upper = result.get("epsilon_upper")
    lines.append(
        f"accountant ε upper bound: {_number(upper)} ({result.get('upper_source', '')}"
        + (f"; {detail}" if detail else "")
        + ")"
    )
    if result.get("ratio") is not None:
        lines.append(f"ratio lower/upper: {float(result['ratio']):.3f}")
    if result.get("lower_exceeds_upper"):
        lines.append(
            f"CONTRADICTION: the lower bound exceeds the upper bound — the mechanism or its "
            f"accounting is wrong (with {confidence} confidence)."
        )
    elif (
        upper is not None
        and math.isfinite(float(upper))
        and float(upper) > float(result["ceiling"])
    ):
        lines.append(CEILING_NOTE)
    estimate = result.get("estimate") or {}
    if estimate.get("epsilon") is not None:
        lines.append(
            f"canary estimate (Andrew et al. 2024; an estimate, not a bound): "
            f"{_number(estimate['epsilon'])}"
        )
    cost = f"audit cost: {float(result['audit_seconds']):.2f} s"
    if result.get("cost_ratio") is not None:
        cost += f" ({float(result['cost_ratio']):.2f}× the audited run)"
    lines.append(cost)
    return "\n".join(lines)
