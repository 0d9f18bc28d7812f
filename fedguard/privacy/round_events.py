"""The privacy events of one round, typed until storage writes them to the ledger.

Mechanisms return :class:`~fedguard.privacy.events.PrivacyEvent` (a release about the whole
population, e.g. central noise on the aggregate) or :class:`~fedguard.privacy.events.ClientEvent`
(a release about one client, e.g. its DP-SGD steps) or :class:`~fedguard.privacy.events.UnitEvent`
(a release about every member at another privacy level, e.g. each user under ULDP-AVG). The round collects them here; only the
runner's ledger entry (:meth:`RoundEvents.to_dict`) turns them into JSON-safe dicts, the form
``ledger.jsonl`` stores and :func:`~fedguard.privacy.budget.epsilon_of_ledger` reads back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fedguard.errors import ConfigError
from fedguard.privacy.events import ClientEvent, PrivacyEvent, UnitEvent


@dataclass
class RoundEvents:
    #: a UnitEvent is a population release at another privacy level (user-level DP)
    population: list[PrivacyEvent | UnitEvent] = field(default_factory=list)
    clients: dict[int, list[ClientEvent]] = field(default_factory=dict)

    def add(self, events: Iterable[Any], source: str) -> None:
        """File each event: a :class:`ClientEvent` under its client, any other
        :class:`PrivacyEvent` under the population. ``source`` names the component in the error
        a wrongly typed event raises."""
        for ev in events:
            if isinstance(ev, ClientEvent):
                self.clients.setdefault(ev.client, []).append(ev)
            elif isinstance(ev, PrivacyEvent | UnitEvent):
                self.population.append(ev)
            else:
                raise ConfigError(
                    f"{source} returned a privacy event of type {type(ev).__name__}; events must "
                    "be fedguard.privacy.events.PrivacyEvent, ClientEvent or UnitEvent objects."
                )

    def to_dict(self) -> dict[str, Any]:
        """The ledger entry's form: ``{"population": [...], "clients": {"id": [...]}}``."""
        return {
            "population": [ev.to_dict() for ev in self.population],
            "clients": {str(c): [ev.to_dict() for ev in evs] for c, evs in self.clients.items()},
        }


__all__ = ["RoundEvents"]
