"""The privacy ledger: every round's privacy events, for the population and per client, as JSON.

A ledger protects one :class:`~fedguard.privacy.events.PrivacyUnit` (level and neighbouring
relation). Each round records

- ``population`` events: what every member of the population incurred this round (central
  DP-FedAvg noise on a Poisson-sampled cohort covers every client, sampled or not);
- ``clients`` events: what one client incurred (its local DP-SGD steps, its RQM release), keyed
  by client id.

A client's guarantee composes the population events with its own; the overall guarantee is the
worst client's (the population's alone when no client has events of its own).

``ledger.json`` holds one or more ledgers (e.g. a client-level and a record-level one) and a
SHA-256 checksum of their canonical JSON; loading recomputes it, so a tampered or truncated file
is refused with a clear error. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedguard.errors import ConfigError, UserError
from fedguard.privacy.events import (
    RELATION_OF_SCHEME,
    PrivacyEvent,
    PrivacyUnit,
    Sampled,
    compose,
    event_from_dict,
    iter_events,
)

if TYPE_CHECKING:
    from fedguard.privacy.accountants.base import Accountant

LEDGER_FORMAT = "fedguard-privacy-ledger"
LEDGER_VERSION = 1


class LedgerError(UserError):
    """A ledger file is missing, truncated, tampered with or of an unknown format."""


@dataclass(frozen=True)
class LedgerRound:
    """The events of one round: for the whole population and per client id."""

    round: int
    population: tuple[PrivacyEvent, ...] = ()
    clients: Mapping[int, tuple[PrivacyEvent, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "population": [e.to_dict() for e in self.population],
            "clients": {
                str(cid): [e.to_dict() for e in events]
                for cid, events in sorted(self.clients.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRound:
        try:
            return cls(
                round=int(data["round"]),
                population=tuple(event_from_dict(e) for e in data.get("population", [])),
                clients={
                    int(cid): tuple(event_from_dict(e) for e in events)
                    for cid, events in data.get("clients", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as err:
            raise LedgerError(f"ledger round entry is malformed ({err}).") from err


@dataclass(frozen=True)
class EpsilonSummary:
    """ε of a ledger under one accountant: overall (worst client), population-only, per client."""

    accountant: str
    delta: float
    epsilon: float
    population_epsilon: float | None
    per_client: Mapping[int, float]
    settings: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant,
            "delta": self.delta,
            "epsilon": self.epsilon,
            "population_epsilon": self.population_epsilon,
            "per_client": {str(k): v for k, v in sorted(self.per_client.items())},
            "settings": dict(self.settings),
        }


class PrivacyLedger:
    """Append-only record of privacy events for one privacy unit.

    Parameters
    ----------
    unit
        Whose privacy and which neighbouring relation (a Poisson-sampled event needs
        ``add_remove``, a fixed cohort ``replace_one``; a mismatch is refused on append).
    population_size
        Number of units in the population, when known.
    metadata
        Free JSON-safe information (run id, mechanism names, ...).
    """

    def __init__(
        self,
        unit: PrivacyUnit | None = None,
        population_size: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.unit = unit if unit is not None else PrivacyUnit()
        if population_size is not None and (
            not isinstance(population_size, int) or population_size < 1
        ):
            raise ConfigError(f"population_size must be an integer >= 1 (got {population_size!r}).")
        self.population_size = population_size
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._rounds: list[LedgerRound] = []

    # ---------------------------------------------------------------------------- recording

    @property
    def rounds(self) -> tuple[LedgerRound, ...]:
        return tuple(self._rounds)

    def _check_event(self, event: PrivacyEvent) -> None:
        if not isinstance(event, PrivacyEvent):
            raise ConfigError(f"ledger events must be PrivacyEvents (got {type(event).__name__}).")
        for node in iter_events(event):
            if isinstance(node, Sampled) and node.rate < 1:
                needed = RELATION_OF_SCHEME[node.scheme]
                if needed != self.unit.relation:
                    raise ConfigError(
                        f"event sampling scheme {node.scheme!r} is accounted under {needed!r}, "
                        f"but this ledger's relation is {self.unit.relation!r}."
                    )

    def append(
        self,
        round: int,
        population: Iterable[PrivacyEvent] = (),
        clients: Mapping[int, Iterable[PrivacyEvent]] | None = None,
    ) -> None:
        """Record round ``round``'s events (appending to that round if it is the last one).

        Rounds must be recorded in non-decreasing order.
        """
        if not isinstance(round, int) or isinstance(round, bool) or round < 0:
            raise ConfigError(f"round must be an integer >= 0 (got {round!r}).")
        pop = tuple(population)
        per_client = {int(cid): tuple(evs) for cid, evs in (clients or {}).items()}
        for e in pop:
            self._check_event(e)
        for evs in per_client.values():
            for e in evs:
                self._check_event(e)
        if self._rounds and round < self._rounds[-1].round:
            raise ConfigError(
                f"round must be >= the last recorded round {self._rounds[-1].round} (got {round})."
            )
        if self._rounds and self._rounds[-1].round == round:
            last = self._rounds.pop()
            merged = {cid: tuple(evs) for cid, evs in last.clients.items()}
            for cid, evs in per_client.items():
                merged[cid] = merged.get(cid, ()) + evs
            self._rounds.append(LedgerRound(round, last.population + pop, merged))
        else:
            self._rounds.append(LedgerRound(round, pop, per_client))

    # ----------------------------------------------------------------------------- queries

    def _upto(self, up_to_round: int | None) -> list[LedgerRound]:
        return [r for r in self._rounds if up_to_round is None or r.round <= up_to_round]

    def client_ids(self) -> tuple[int, ...]:
        """Ids of the clients that have events of their own, sorted."""
        return tuple(sorted({cid for r in self._rounds for cid in r.clients}))

    def population_event(self, up_to_round: int | None = None) -> PrivacyEvent | None:
        """Composition of every population event up to ``up_to_round`` (inclusive), or None."""
        events = [e for r in self._upto(up_to_round) for e in r.population]
        return compose(events) if events else None

    def client_event(self, client_id: int, up_to_round: int | None = None) -> PrivacyEvent | None:
        """Composition of the population events and client ``client_id``'s own, or None."""
        events = [e for r in self._upto(up_to_round) for e in r.population]
        events += [e for r in self._upto(up_to_round) for e in r.clients.get(client_id, ())]
        return compose(events) if events else None

    def client_events(self, up_to_round: int | None = None) -> dict[int, PrivacyEvent]:
        """:meth:`client_event` for every client with events of its own."""
        out: dict[int, PrivacyEvent] = {}
        for cid in self.client_ids():
            event = self.client_event(cid, up_to_round)
            if event is not None:
                out[cid] = event
        return out

    def epsilon(
        self, accountant: Accountant, delta: float, up_to_round: int | None = None
    ) -> EpsilonSummary:
        """ε per client and overall (the worst client, or the population's alone).

        Clients with identical histories are accounted once. Raises the accountant's
        ``UnsupportedEventError`` if it cannot handle an event.
        """
        cache: dict[PrivacyEvent, float] = {}

        def eps(event: PrivacyEvent) -> float:
            if event not in cache:
                cache[event] = accountant.epsilon(event, delta)
            return cache[event]

        population = self.population_event(up_to_round)
        pop_eps = eps(population) if population is not None else None
        per_client = {cid: eps(e) for cid, e in self.client_events(up_to_round).items()}
        candidates = [*per_client.values()] + ([pop_eps] if pop_eps is not None else [])
        return EpsilonSummary(
            accountant=accountant.name,
            delta=delta,
            epsilon=max(candidates) if candidates else 0.0,
            population_epsilon=pop_eps,
            per_client=per_client,
            settings=accountant.settings(),
        )

    def epsilon_by_round(
        self, accountant: Accountant, delta: float, rounds: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Overall ε after each of ``rounds`` (default: every recorded round)."""
        todo = list(rounds) if rounds is not None else [r.round for r in self._rounds]
        return [(t, self.epsilon(accountant, delta, up_to_round=t).epsilon) for t in todo]

    # ------------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit.to_dict(),
            "population_size": self.population_size,
            "metadata": self.metadata,
            "rounds": [r.to_dict() for r in self._rounds],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyLedger:
        try:
            ledger = cls(
                unit=PrivacyUnit.from_dict(data["unit"]),
                population_size=data.get("population_size"),
                metadata=data.get("metadata") or {},
            )
            for entry in data["rounds"]:
                r = LedgerRound.from_dict(entry)
                ledger.append(r.round, r.population, r.clients)
        except (KeyError, TypeError) as err:
            raise LedgerError(f"ledger is malformed (missing or wrong field: {err}).") from err
        except ConfigError as err:
            raise LedgerError(f"ledger holds an invalid entry: {err}") from err
        return ledger

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this ledger alone to ``path`` (see :func:`save_ledgers`)."""
        return save_ledgers(path, [self])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivacyLedger:
        """Read a file holding exactly one ledger (see :func:`load_ledgers`)."""
        ledgers = load_ledgers(path)
        if len(ledgers) != 1:
            raise LedgerError(f"{path} holds {len(ledgers)} ledgers; read it with load_ledgers().")
        return ledgers[0]


def _canonical(body: Any) -> bytes:
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def save_ledgers(path: str | os.PathLike[str], ledgers: Sequence[PrivacyLedger]) -> Path:
    """Write ``ledgers`` to ``path`` (normally ``RUN/ledger.json``) with a SHA-256 checksum.

    Atomic: a temporary file in the same directory is renamed over ``path``.
    """
    target = Path(path)
    body = {"ledgers": [ledger.to_dict() for ledger in ledgers]}
    try:
        payload = _canonical(body)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"ledger metadata must be JSON-serialisable and finite ({err}).") from err
    document = {
        "format": LEDGER_FORMAT,
        "version": LEDGER_VERSION,
        "checksum": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
        "body": body,
    }
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n"
    _atomic_write(target, text)
    return target


def _read_json(source: Path) -> Any:
    """The parsed JSON of a ledger file; a missing, unreadable or truncated file is a
    :class:`LedgerError` naming it."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise LedgerError(f"ledger file {source} does not exist.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise LedgerError(f"ledger file {source} cannot be read ({err}).") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LedgerError(
            f"ledger file {source} is truncated or not valid JSON (line {err.lineno})."
        ) from err


def load_ledgers(path: str | os.PathLike[str]) -> list[PrivacyLedger]:
    """Read every ledger of ``path``, refusing a file whose checksum does not match."""
    source = Path(path)
    document = _read_json(source)
    if not isinstance(document, dict) or document.get("format") != LEDGER_FORMAT:
        raise LedgerError(f"{source} is not a fedguard privacy ledger.")
    if document.get("version") != LEDGER_VERSION:
        raise LedgerError(
            f"ledger file {source} has version {document.get('version')!r}; this fedguard reads "
            f"version {LEDGER_VERSION}."
        )
    checksum = document.get("checksum") or {}
    body = document.get("body")
    if checksum.get("algorithm") != "sha256" or not isinstance(checksum.get("value"), str):
        raise LedgerError(f"ledger file {source} has no SHA-256 checksum.")
    try:
        actual = hashlib.sha256(_canonical(body)).hexdigest()
    except (TypeError, ValueError) as err:
        raise LedgerError(f"ledger file {source} holds non-finite or invalid values.") from err
    if actual != checksum["value"]:
        raise LedgerError(
            f"ledger file {source} was modified or corrupted: its SHA-256 checksum does not "
            "match its contents."
        )
    if not isinstance(body, dict) or not isinstance(body.get("ledgers"), list):
        raise LedgerError(f"ledger file {source} has no list of ledgers.")
    return [PrivacyLedger.from_dict(entry) for entry in body["ledgers"]]


# --------------------------------------------------------------------------------------------
# The run directory's ledger.json: the round loop's dict, sealed with a checksum


def _without_checksum(ledger: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ledger.items() if k != "checksum"}


def seal_run_ledger(ledger: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the round loop's ledger dict with ``"checksum"``: the SHA-256 of the canonical
    JSON (sorted keys, no whitespace) of everything else."""
    body = _without_checksum(ledger)
    try:
        digest = hashlib.sha256(_canonical(body)).hexdigest()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"ledger must be JSON-serialisable and finite ({err}).") from err
    return {**body, "checksum": {"algorithm": "sha256", "value": digest}}


def verify_run_ledger(ledger: Mapping[str, Any], source: str = "ledger") -> dict[str, Any]:
    """The ledger without its checksum, or :class:`LedgerError` if the checksum is missing or
    does not match."""
    checksum = ledger.get("checksum")
    if not isinstance(checksum, Mapping) or checksum.get("algorithm") != "sha256":
        raise LedgerError(f"{source} has no SHA-256 checksum, so it cannot be trusted.")
    body = _without_checksum(ledger)
    try:
        actual = hashlib.sha256(_canonical(body)).hexdigest()
    except (TypeError, ValueError) as err:
        raise LedgerError(f"{source} holds non-finite or invalid values.") from err
    if actual != checksum.get("value"):
        raise LedgerError(
            f"{source} was modified or corrupted: its SHA-256 checksum does not match its contents."
        )
    return body


def write_run_ledger(path: str | os.PathLike[str], ledger: Mapping[str, Any]) -> Path:
    """Write the round loop's ledger dict to ``path`` sealed (:func:`seal_run_ledger`), atomically."""
    target = Path(path)
    text = json.dumps(seal_run_ledger(ledger), indent=1, sort_keys=True, allow_nan=False) + "\n"
    _atomic_write(target, text)
    return target


def read_run_ledger(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a ledger written by :func:`write_run_ledger` (checksum removed)."""
    source = Path(path)
    document = _read_json(source)
    if not isinstance(document, dict):
        raise LedgerError(f"ledger file {source} is not a JSON object.")
    return verify_run_ledger(document, f"ledger file {source}")


def _atomic_write(target: Path, text: str) -> None:
    from fedguard.storage.atomic import write_text

    write_text(target, text)


__all__ = [
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "EpsilonSummary",
    "LedgerError",
    "LedgerRound",
    "PrivacyLedger",
    "load_ledgers",
    "read_run_ledger",
    "save_ledgers",
    "seal_run_ledger",
    "verify_run_ledger",
    "write_run_ledger",
]
