"""How the CLI states ε: accountant choice, ε per accountant with refusals, JSON-safe numbers.

Shared by ``fedguard audit`` (:mod:`fedguard.cli.audit_command`) and its record-level canary
form (:mod:`fedguard.cli.sample_canary_command`), so neither imports the other.
"""

from __future__ import annotations

import math
from typing import Any

from fedguard.errors import UserError

ACCOUNTANT_CHOICES = ("rdp", "prv", "pld", "all")
ALL_ACCOUNTANTS = ("rdp", "prv", "pld")


def accountant_names(choice: str) -> tuple[str, ...]:
    if choice not in ACCOUNTANT_CHOICES:
        raise UserError(f"--accountant must be one of rdp, prv, pld, all (got {choice!r}).")
    return ALL_ACCOUNTANTS if choice == "all" else (choice,)


def jsonable(value: Any) -> Any:
    """Replace non-finite floats by None (JSON has no ∞) recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def format_number(value: Any) -> str:
    """A figure for a table: 4 significant digits, ∞, or n/a."""
    if value is None:
        return "n/a"
    v = float(value)
    return "∞" if math.isinf(v) else f"{v:.4g}"


def epsilon_per_accountant(event: Any, delta: float, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: {"epsilon", "settings"} | {"unsupported", "settings"[, "refused"]}}`` for each
    accountant.

    One accountant's refusal never loses the others' answers: an event type it cannot handle is
    ``unsupported``; a setting it refuses (its memory guard) or that runs out of memory anyway is
    ``unsupported`` with ``"refused": True`` and the reason.
    """
    from functools import partial

    from fedguard.privacy.accountants import get_accountant
    from fedguard.privacy.accountants.base import check_delta
    from fedguard.privacy.budget import epsilon_or_refusal

    delta = check_delta(delta)
    out: dict[str, Any] = {}
    for name in names:
        acc = get_accountant(name)
        ok, reason = acc.supports(event)
        if not ok:
            out[name] = {"unsupported": reason, "settings": acc.settings()}
            continue
        epsilon, refusal = epsilon_or_refusal(partial(acc.epsilon, event, delta), acc.name)
        if refusal is None:
            out[name] = {"epsilon": epsilon, "settings": acc.settings()}
        else:
            out[name] = {"unsupported": refusal, "refused": True, "settings": acc.settings()}
    return out


__all__ = [
    "ACCOUNTANT_CHOICES",
    "ALL_ACCOUNTANTS",
    "accountant_names",
    "epsilon_per_accountant",
    "format_number",
    "jsonable",
]
