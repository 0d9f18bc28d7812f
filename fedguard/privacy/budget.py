"""ε of a run, from the round loop's ledger dict (the content of ``RUN/ledger.json``).

The round loop records ``{"sampling": {...}, "delta": δ, "rounds": [{"round": t, "population":
[event dicts], "clients": {"id": [event dicts]}}]}``. Per-client event dicts carry ``"client"``
(and ``"level": "record"`` for record-level guarantees such as DP-SGD in local training), as
written by :class:`~fedguard.privacy.events.ClientEvent`. The neighbouring relation comes from
``sampling["neighbouring_relation"]`` (Poisson / all clients: add/remove; fixed cohort:
replace-one).

The headline ε is the client-level guarantee when any client-level event exists (the worst
client's), else the user-level one (user-level DP across silos: population events with
``"level": "user"``), else the record-level one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from fedguard.errors import IncompatibleError
from fedguard.privacy.accountants import Accountant, get_accountant
from fedguard.privacy.accountants.base import check_delta
from fedguard.privacy.events import LEVELS, PrivacyEvent, PrivacyUnit, event_from_dict
from fedguard.privacy.ledger import LedgerError, PrivacyLedger

_EXTRA_KEYS = ("client", "level")


def _split(data: Any) -> tuple[PrivacyEvent, str]:
    if not isinstance(data, Mapping):
        raise LedgerError(f"ledger event must be a JSON object (got {data!r}).")
    level = str(data.get("level", "client"))
    if level not in LEVELS:
        raise LedgerError(f"ledger event level must be one of {LEVELS} (got {level!r}).")
    try:
        event = event_from_dict({k: v for k, v in data.items() if k not in _EXTRA_KEYS})
    except Exception as err:  # ConfigError from validation: the file is at fault
        raise LedgerError(f"ledger holds an invalid privacy event: {err}") from err
    return event, level


def run_ledgers(ledger: Mapping[str, Any]) -> dict[str, PrivacyLedger]:
    """The run's events as one :class:`PrivacyLedger` per privacy level that has events
    (``"client"``, ``"user"``, ``"record"``)."""
    return RunLedgers(ledger).update(ledger)


class RunLedgers:
    """:func:`run_ledgers` kept up to date as a run appends rounds: each round's event dicts are
    parsed once. A run that stops on ``privacy.stop_at_epsilon`` asks for ε after every round;
    parsing the whole ledger each time cost 50 µs a round of history (160 ms at round 3,000),
    quadratic over the run."""

    def __init__(self, ledger: Mapping[str, Any]) -> None:
        sampling = ledger.get("sampling") or {}
        self._relation = str(sampling.get("neighbouring_relation", "add_remove"))
        population = sampling.get("population")
        self._population = population if isinstance(population, int) else None
        self._sampling = dict(sampling)
        self.levels: dict[str, PrivacyLedger] = {}
        self._parsed: list[Any] = []  # the round entries already parsed, in order

    def update(self, ledger: Mapping[str, Any]) -> dict[str, PrivacyLedger]:
        """The ledgers of every round of ``ledger`` (which extends the rounds seen so far;
        anything else is parsed again from the start)."""
        rounds = ledger.get("rounds", [])
        if not isinstance(rounds, list):
            raise LedgerError("ledger 'rounds' must be a list.")
        seen = len(self._parsed)
        if len(rounds) < seen or any(
            a is not b for a, b in zip(rounds, self._parsed, strict=False)
        ):
            self.levels, self._parsed, seen = {}, [], 0
        for entry in rounds[seen:]:
            self._add(entry)
            self._parsed.append(entry)
        return self.levels

    def _level(self, level: str) -> PrivacyLedger:
        if level not in self.levels:
            self.levels[level] = PrivacyLedger(
                PrivacyUnit(level=level, relation=self._relation),
                population_size=self._population,
                metadata={"sampling": dict(self._sampling)},
            )
        return self.levels[level]

    def _add(self, entry: Any) -> None:
        if not isinstance(entry, Mapping) or "round" not in entry:
            raise LedgerError(f"ledger round entry is malformed ({entry!r}).")
        t = int(entry["round"])
        for data in entry.get("population", []) or []:
            event, level = _split(data)
            self._level(level).append(t, population=[event])
        for cid, events in (entry.get("clients") or {}).items():
            for data in events:
                event, level = _split(data)
                self._level(level).append(t, clients={int(cid): [event]})


def has_events(ledger: Mapping[str, Any]) -> bool:
    """Whether any privacy mechanism recorded an event."""
    return any(r.get("population") or r.get("clients") for r in ledger.get("rounds", []) or [])


#: Which level's ε is the run's headline when several are present: the coarsest unit first (a
#: client's dataset ⊇ a user's records in that client ⊇ one record).
HEADLINE_ORDER: tuple[str, ...] = ("client", "user", "record")


def headline_level(levels: Iterable[str]) -> str:
    """The level whose ε is the headline among ``levels`` (``"client"`` when none)."""
    present = set(levels)
    return next((level for level in HEADLINE_ORDER if level in present), "client")


def _headline(ledgers: Mapping[str, PrivacyLedger]) -> PrivacyLedger | None:
    return ledgers.get(headline_level(ledgers))


def _accountant(accountant: str | Accountant) -> Accountant:
    return get_accountant(accountant) if isinstance(accountant, str) else accountant


def epsilon_of_ledger(
    ledger: Mapping[str, Any], delta: float, accountant: str | Accountant = "rdp"
) -> float:
    """Headline ε at ``delta`` (∞ when no mechanism ran: no formal guarantee).

    Raises :class:`~fedguard.privacy.accountants.UnsupportedEventError` if ``accountant``
    cannot handle an event (RDP handles every event type).
    """
    return headline_epsilon(run_ledgers(ledger), delta, accountant)


def headline_epsilon(
    ledgers: Mapping[str, PrivacyLedger], delta: float, accountant: str | Accountant = "rdp"
) -> float:
    """:func:`epsilon_of_ledger` of ledgers already built (:class:`RunLedgers`)."""
    delta = check_delta(delta)
    chosen = _headline(ledgers)
    if chosen is None:
        return math.inf
    return chosen.epsilon(_accountant(accountant), delta).epsilon


def epsilon_by_round(
    ledger: Mapping[str, Any],
    delta: float,
    accountant: str | Accountant = "rdp",
    rounds: Sequence[int] | None = None,
) -> list[tuple[int, float]]:
    """Headline ε after each round (default: every recorded round)."""
    delta = check_delta(delta)
    chosen = _headline(run_ledgers(ledger))
    if chosen is None:
        return []
    return chosen.epsilon_by_round(_accountant(accountant), delta, rounds)


def ledger_report(
    ledger: Mapping[str, Any],
    delta: float,
    accountants: Sequence[str | Accountant] = ("rdp", "pld", "prv"),
) -> dict[str, Any]:
    """JSON-safe ε per privacy level and accountant, as ``fedguard audit --json`` prints it.

    ``{"delta", "epsilon", "accountant", "levels": {level: {"unit": {...}, "accountants":
    {name: {"epsilon", "population_epsilon", "per_client", "settings"} | {"unsupported":
    reason, "settings"}}}}}``; top-level ``epsilon``/``accountant`` are the headline from the
    first accountant that supports the headline level's events.
    """
    delta = check_delta(delta)
    ledgers = run_ledgers(ledger)
    report: dict[str, Any] = {
        "delta": delta,
        "epsilon": math.inf if not ledgers else None,
        "accountant": None,
        "levels": {},
    }
    headline = headline_level(ledgers)
    for level, led in ledgers.items():
        entries: dict[str, Any] = {}
        for spec in accountants:
            acc = _accountant(spec)
            unsupported = [
                reason
                for event in _all_events(led)
                for ok, reason in [acc.supports(event)]
                if not ok
            ]
            if unsupported:
                entries[acc.name] = {"unsupported": unsupported[0], "settings": acc.settings()}
                continue
            result, refusal = epsilon_or_refusal(partial(led.epsilon, acc, delta), acc.name)
            if result is None:
                entries[acc.name] = {
                    "unsupported": refusal,
                    "refused": True,
                    "settings": acc.settings(),
                }
                continue
            summary = result.to_dict()
            entries[acc.name] = summary
            if level == headline and report["accountant"] is None:
                report["epsilon"], report["accountant"] = summary["epsilon"], acc.name
        report["levels"][level] = {"unit": led.unit.to_dict(), "accountants": entries}
    return report


T = TypeVar("T")


def epsilon_or_refusal(compute: Callable[[], T], name: str) -> tuple[T | None, str | None]:
    """``(compute(), None)``, or ``(None, reason)`` when the accountant ``name`` refuses.

    A refusal is an :class:`~fedguard.errors.IncompatibleError` raised while accounting (a
    memory guard: the PRV or PLD grid would need gigabytes) or a ``MemoryError`` that escaped
    every guard; either way the other accountants' answers are kept and this one says why.
    """
    try:
        return compute(), None
    except IncompatibleError as err:
        return None, str(err)
    except MemoryError as err:
        detail = f" ({err})" if str(err) else ""
        return None, (
            f"the {name} accountant ran out of memory on this event{detail}; use the rdp "
            "accountant or a coarser setting."
        )


def _all_events(ledger: PrivacyLedger) -> list[PrivacyEvent]:
    events = [e for e in [ledger.population_event()] if e is not None]
    return events + list(ledger.client_events().values())


__all__ = [
    "HEADLINE_ORDER",
    "RunLedgers",
    "epsilon_by_round",
    "epsilon_of_ledger",
    "epsilon_or_refusal",
    "has_events",
    "headline_epsilon",
    "headline_level",
    "ledger_report",
    "run_ledgers",
]
