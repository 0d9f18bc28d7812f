"""A run's privacy statement: unit, relation, trust model, sampling, accountant, (ε, δ).

The fields practitioners are asked to report with any DP claim (Ponomareva et al. 2023, "How to
DP-fy ML", Sec. 5.3), derived from the run's ledger dict and spec.

References
----------
Ponomareva et al. "How to DP-fy ML: A Practical Guide to Machine Learning with Differential
Privacy." JAIR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.budget import headline_level, run_ledgers
from fedguard.privacy.events import (
    DiscreteGaussian,
    Gaussian,
    RandomizedQuantization,
    Skellam,
    iter_events,
)
from fedguard.privacy.ledger import PrivacyLedger

#: Per-round ε curves are drawn for these accountants (when they support the events).
CURVE_ACCOUNTANTS = ("rdp", "pld")
#: PLD/PRV per-round curves cost ~0.3 s a round; above this many rounds only RDP is drawn.
MAX_ROUNDS_FOR_SLOW_CURVES = 50
#: the data's normalisation statistics are released to every client outside any DP mechanism
NORMALIZATION_NOTE = (
    "The inputs were standardised with the mean and standard deviation of the training split "
    "(all clients' data pooled), computed outside any DP mechanism: this guarantee does not "
    "cover those statistics."
)


def _spec_value(spec: Any, *path: str, default: Any = None) -> Any:
    value = spec
    for name in path:
        value = getattr(value, name, None) if not isinstance(value, Mapping) else value.get(name)
        if value is None:
            return default
    return value


def _trust_model(ledger: PrivacyLedger, level: str, transport: str) -> str:
    kinds: set[type] = set()
    for round_ in ledger.rounds:
        events = list(round_.population) + [e for es in round_.clients.values() for e in es]
        for event in events:
            kinds.update(type(node) for node in iter_events(event))
    if kinds & {DiscreteGaussian, Skellam} or transport.startswith("secagg"):
        return "distributed (clients add noise; the server sees only the securely aggregated sum)"
    if RandomizedQuantization in kinds:
        return "local (each client's randomized quantization is private on its own)"
    if level == "record":
        return "local training (DP-SGD protects each record in every update a client sends)"
    if level == "user":
        return (
            "distributed across silos (each silo clips every user's update, bounds each user's "
            "total weight across silos and adds its share of the Gaussian noise)"
        )
    if Gaussian in kinds:
        return "central (a trusted server adds the noise to the aggregate)"
    return "unspecified"


def privacy_statement(ledger: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    """JSON-safe statement of the run's headline guarantee (see module docstring).

    Keys: ``unit``, ``neighbouring_relation``, ``trust_model``, ``sampling``, ``accountant``,
    ``accountant_settings``, ``delta``, ``epsilon``, ``epsilon_by_round`` ({accountant: [ε after
    round 1, 2, …]}), ``target_epsilon``, ``verdict``, ``within_budget``, ``notes``, ``levels``
    (headline ε of every privacy level present).
    """
    delta = float(_spec_value(spec, "privacy", "delta", default=ledger.get("delta", 1e-5)))
    target = _spec_value(spec, "privacy", "target_epsilon")
    secure_rng = bool(_spec_value(spec, "privacy", "secure_rng", default=False))
    transport = str(_spec_value(spec, "defense", "transport", "name", default="plain"))
    sampling = dict(ledger.get("sampling") or {})
    ledgers = run_ledgers(ledger)
    notes: list[str] = []
    level = headline_level(ledgers)
    chosen = ledgers.get(level)
    rdp = get_accountant("rdp")
    scheme = sampling.get("scheme", "all")
    sampling_text = {
        "poisson": f"Poisson, rate {sampling.get('rate')}",
        "without_replacement": (
            f"fixed cohort of {sampling.get('expected_cohort'):.0f} out of "
            f"{sampling.get('population')} (sampling without replacement)"
            if sampling.get("expected_cohort") is not None
            else "fixed cohort (sampling without replacement)"
        ),
    }.get(scheme, "every client, every round")
    if chosen is None:
        return {
            "unit": "none",
            "neighbouring_relation": "none",
            "trust_model": "none",
            "sampling": sampling_text,
            "accountant": "none",
            "accountant_settings": {},
            "delta": delta,
            "epsilon": math.inf,
            "epsilon_by_round": {},
            "target_epsilon": target,
            "verdict": "No differential-privacy mechanism ran: ε = ∞." if target else None,
            "within_budget": False if target else None,
            "notes": ["No privacy events were recorded: the run has no formal guarantee."],
            "levels": {},
        }
    summary = chosen.epsilon(rdp, delta)
    round_ids = [int(r["round"]) for r in ledger.get("rounds", []) if "round" in r]
    curves: dict[str, list[float]] = {}
    for name in CURVE_ACCOUNTANTS:
        acc = get_accountant(name)
        unsupported = [
            reason for event in _events(chosen) for ok, reason in [acc.supports(event)] if not ok
        ]
        if unsupported:
            notes.append(f"{name}: {unsupported[0]}")
            continue
        if name != "rdp" and len(round_ids) > MAX_ROUNDS_FOR_SLOW_CURVES:
            notes.append(
                f"{name}: ε over rounds not drawn for more than "
                f"{MAX_ROUNDS_FOR_SLOW_CURVES} rounds; final ε is in fedguard audit."
            )
            continue
        curves[name] = [_epsilon_upto(chosen, acc, delta, t) for t in round_ids]
    if not secure_rng:
        notes.append(
            "The noise came from a seeded generator: this run is a simulation of the mechanism; "
            "set privacy.secure_rng: true for noise from the OS CSPRNG."
        )
    if _spec_value(spec, "data", "dataset", "params", "normalize", default=False):
        notes.append(NORMALIZATION_NOTE)
    levels = {lvl: led.epsilon(rdp, delta).epsilon for lvl, led in ledgers.items()}
    if len(levels) > 1 and "record" in levels and level != "record":
        notes.append(
            f"Record-level guarantee (DP-SGD): ε = {levels['record']:.4g} at δ = {delta:g}."
        )
    if len(levels) > 1 and "user" in levels and level != "user":
        notes.append(
            f"User-level guarantee (across silos): ε = {levels['user']:.4g} at δ = {delta:g}."
        )
    verdict, within = None, None
    if target is not None:
        within = summary.epsilon <= float(target)
        verdict = (
            f"ε = {summary.epsilon:.4g} is within the budget ε ≤ {float(target):g}."
            if within
            else f"ε = {summary.epsilon:.4g} exceeds the budget ε ≤ {float(target):g}."
        )
    relation = {"add_remove": "add/remove one", "replace_one": "replace one"}[chosen.unit.relation]
    return {
        "unit": f"{level} ({chosen.unit.description})",
        "neighbouring_relation": relation,
        "trust_model": _trust_model(chosen, level, transport),
        "sampling": sampling_text,
        "accountant": "rdp",
        "accountant_settings": rdp.settings(),
        "delta": delta,
        "epsilon": summary.epsilon,
        "epsilon_by_round": curves,
        "target_epsilon": target,
        "verdict": verdict,
        "within_budget": within,
        "notes": notes,
        "levels": levels,
    }


def _events(ledger: PrivacyLedger) -> list[Any]:
    events = [e for e in [ledger.population_event()] if e is not None]
    return events + list(ledger.client_events().values())


def _epsilon_upto(ledger: PrivacyLedger, accountant: Any, delta: float, t: int) -> float:
    if not any(r.round <= t for r in ledger.rounds):
        return 0.0
    return float(ledger.epsilon(accountant, delta, up_to_round=t).epsilon)


__all__ = ["privacy_statement"]
