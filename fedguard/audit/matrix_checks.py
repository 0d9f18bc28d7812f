"""Cross-checks of DP-FTRL / BandMF ledger entries against the run's spec and participation.

A matrix mechanism (``dp_ftrl_tree``, ``bandmf``) releases ``C·X + Z`` over the rounds' clipped
sums X; for one client's participation pattern π it is a Gaussian mechanism of sensitivity
``s(π) = √Σ_{i,j∈π} |(CᵀC)_{ij}|`` (clip norms) and noise ``z`` (Denisov et al. 2022). Its ledger
files a :class:`~fedguard.privacy.matrix_events.MatrixGaussian` whenever the sensitivity of
what has been released grows, with multipliers whose composition is ``μ_t = s_t / z`` (amplified
BandMF: one sampled participation's Gaussian in the rounds of group 0). These checks re-derive
that, reading nothing but ``spec.yaml``, ``rounds.jsonl`` and ``ledger.jsonl``:

* ``… events`` — each round's event (multiplier, sensitivity, prefix sensitivity, strategy,
  bands, separation, participations, sampling) is the one the mechanism — resolved by its
  registry name and built from the spec's parameters — derives for the spec's horizon and
  schedule, and rounds that release nothing new file none;
* ``… schedule`` — who took part when (each record's ``weights`` and ``faulty`` ids) respects
  the min-separation schedule: round t draws only from group ``(t − 1) mod b``, so a client's
  participations are at least b rounds apart;
* ``… realised sensitivity`` — the sensitivity of everything released by round t under the
  participation patterns actually realised (this module's own computation from C) never exceeds
  the ledger's prefix sensitivity at t, and (no amplification) the ledger's multipliers compose
  to ``√Σ 1/z_i² ≥ s_t / z``: the ledger does not under-report the mechanism that ran.

References
----------
Denisov, McMahan, Rush, Smith, Thakurta. "Improved Differential Privacy for SGD via Optimal
Private Linear Operators on Adaptive Streams." NeurIPS 2022 (matrix mechanism = one Gaussian
mechanism of sensitivity ‖C π‖ per participation pattern, adaptive inputs included).
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023 (sensitivity under b-min-separation; amplification).
Kairouz, McMahan, Song, Thakkar, Thakurta, Xu. "Practical and Private (Deep) Learning without
Sampling or Shuffling." ICML 2021 (DP-FTRL tree aggregation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedguard.audit.mechanism_events import Finding, RoundEvents, Slot, close, num
from fedguard.core.sampling import min_separation_groups, sample_clients
from fedguard.errors import UserError
from fedguard.privacy.events import PrivacyEvent, Sampled
from fedguard.privacy.matrix_events import MatrixGaussian
from fedguard.spec import RunSpec

#: registry names of the server transforms checked here
MATRIX_MECHANISMS = ("dp_ftrl_tree", "bandmf")
#: relative slack of "realised ≤ claimed" (floating-point sums in a different order)
_SLACK = 1e-9
_FIELDS = ("strategy", "rounds", "bands", "min_separation", "max_participations")


@dataclass(frozen=True)
class MatrixDerivation:
    """What the spec says the mechanism of ``slot`` filed: its events by round (0-based) and
    the strategy C (rows × rounds) with the round each row is released."""

    slot: Slot
    events: tuple[PrivacyEvent | None, ...]
    strategy: np.ndarray
    release_round: np.ndarray
    separation: int
    rate: float
    noise_multiplier: float

    def expects_event(self, number: int) -> bool:
        """Whether ledger round ``number`` (1-based) holds an event of this mechanism."""
        return 0 < number <= len(self.events) and self.events[number - 1] is not None


def schedule(spec: RunSpec) -> tuple[int, float]:
    """``(min separation b, sampling rate q inside the eligible group)`` of the spec."""
    c = spec.clients
    separation = int(c.min_separation or 1) if c.sampling == "min_separation" else 1
    rate = float(c.sampling_rate or 1.0) if c.sampling in ("poisson", "min_separation") else 1.0
    return separation, rate if 0 < rate < 1 else 1.0


def derive(slot: Slot, spec: RunSpec) -> MatrixDerivation | str:
    """The mechanism's events from the spec, or why they cannot be derived (a sentence)."""
    from fedguard import registry

    try:
        mechanism = registry.build("server_transform", slot.name, slot.params, slot.path)
        horizon = int(slot.params.get("rounds") or spec.rounds)
        separation, rate = schedule(spec)
        if spec.clients.sampling == "fixed":
            raise UserError("a fixed cohort has no derived sensitivity")
        mechanism.check_schedule(horizon, separation, rate)
        strategy, release = mechanism.factorization(horizon, separation)
        events = mechanism.events(horizon, separation, rate)
    except (UserError, ValueError, TypeError, AttributeError) as err:
        return f"spec.yaml's {slot.path} ({slot.name}) has no derivable events: {err}"
    return MatrixDerivation(
        slot,
        tuple(events),
        np.asarray(strategy, dtype=np.float64),
        np.asarray(release, dtype=np.int64),
        separation,
        rate,
        float(mechanism.noise_multiplier),
    )


# --------------------------------------------------------------------------------------------
# Round by round: the event the ledger holds is the one the spec derives


def _inner(event: PrivacyEvent) -> tuple[PrivacyEvent, float | None]:
    if isinstance(event, Sampled):
        return event.event, event.rate
    return event, None


def event_findings(derivation: MatrixDerivation, number: int, event: PrivacyEvent) -> list[Finding]:
    """``(check, failure)`` of ledger round ``number``'s event against the derived one."""
    path = derivation.slot.path
    expected = derivation.events[number - 1]
    assert expected is not None  # the caller matched events to the rounds that expect one
    actual, actual_rate = _inner(event)
    wanted, wanted_rate = _inner(expected)
    assert isinstance(wanted, MatrixGaussian)
    where = f"ledger round {number}"
    if not isinstance(actual, MatrixGaussian):
        return [
            (
                f"{path}.event",
                f"{where}: the event filed for spec.yaml's {path} ({derivation.slot.name}) is "
                f"{type(actual).__name__}, not a MatrixGaussian.",
            )
        ]
    found: list[Finding] = []
    failure = None
    if actual_rate != wanted_rate and not (
        actual_rate is not None and wanted_rate is not None and close(actual_rate, wanted_rate)
    ):
        failure = (
            f"{where}: sampling rate {num(actual_rate)} does not match {num(wanted_rate)} "
            "implied by spec.yaml's clients (amplified BandMF is sampled, the rest is not)."
        )
    for name in _FIELDS:
        if failure is None and getattr(actual, name) != getattr(wanted, name):
            failure = (
                f"{where}: {name} {num(getattr(actual, name))} does not match "
                f"{num(getattr(wanted, name))} derived from spec.yaml's {path} and clients."
            )
    found.append((f"{path}.event", failure))
    z = derivation.noise_multiplier
    found.append(
        _number(
            f"{path}.noise_multiplier",
            where,
            "noise_multiplier",
            actual.noise_multiplier,
            wanted.noise_multiplier,
            f"spec.yaml's {path}.noise_multiplier {z:g} over the sensitivity the round adds",
        )
    )
    for name in ("sensitivity", "prefix_sensitivity"):
        found.append(
            _number(
                f"{path}.{name}",
                where,
                name,
                float(getattr(actual, name)),
                float(getattr(wanted, name)),
                f"spec.yaml's {path} strategy under clients.{derivation_schedule(derivation)}",
            )
        )
    return found


def derivation_schedule(derivation: MatrixDerivation) -> str:
    b, q = derivation.separation, derivation.rate
    return f"min_separation {b}" + (f", sampling_rate {q:g}" if q < 1 else "")


def _number(
    key: str, where: str, name: str, actual: float, expected: float, source: str
) -> Finding:
    if close(actual, expected):
        return key, None
    return key, f"{where}: {name} {actual:.6g} does not match {expected:.6g}, implied by {source}."


# --------------------------------------------------------------------------------------------
# Whole run: participation and the sensitivity it realises


def participants(
    spec: RunSpec, records: Sequence[Mapping[str, Any]]
) -> tuple[list[frozenset[int]], int]:
    """Who took part in each round (0-based list): the record's ``weights`` ids and ``faulty``
    ids; a record that lists neither (aborted, empty, or aggregation without per-client weights)
    gets the keyed schedule's cohort re-derived from the spec. Second value: how many rounds
    were re-derived."""
    c = spec.clients
    seed = spec.seed if spec.training_seed is None else spec.training_seed
    out: list[frozenset[int]] = []
    derived = 0
    for t, record in enumerate(records):
        weights = record.get("weights")
        faulty = record.get("faulty")
        if isinstance(weights, Mapping) or (record.get("clients") == 0):
            ids = {int(k) for k in weights} if isinstance(weights, Mapping) else set()
            ids |= {int(i) for i in faulty} if isinstance(faulty, list) else set()
        else:
            ids = set(
                sample_clients(
                    c.sampling,
                    c.n_clients,
                    c.cohort_size or 0,
                    c.sampling_rate or 0,
                    seed,
                    t,
                    c.min_separation or 1,
                )
            )
            derived += 1
        out.append(frozenset(ids))
    return out, derived


def schedule_failure(spec: RunSpec, rounds: Sequence[frozenset[int]]) -> str | None:
    """The first participation that breaks the min-separation schedule, as a sentence."""
    c = spec.clients
    b = (c.min_separation or 1) if c.sampling == "min_separation" else 1
    seed = spec.seed if spec.training_seed is None else spec.training_seed
    groups = min_separation_groups(c.n_clients, b, seed) if b > 1 else None
    last: dict[int, int] = {}
    for t, ids in enumerate(rounds):
        for cid in sorted(ids):
            if not 0 <= cid < c.n_clients:
                return (
                    f"rounds.jsonl round {t + 1}: client {cid} took part but is not a client of "
                    f"spec.yaml's clients.n_clients {c.n_clients}."
                )
            if groups is not None and int(groups[cid]) != t % b:
                gap = f", {t - last[cid]} rounds after its last" if cid in last else ""
                return (
                    f"rounds.jsonl round {t + 1}: client {cid} (group {int(groups[cid])}) took "
                    f"part, but round {t + 1} draws only from group {t % b} of "
                    f"clients.min_separation {b}{gap}."
                )
            last[cid] = t
    return None


def realised_prefix_sensitivity(
    strategy: np.ndarray, release_round: np.ndarray, patterns: Sequence[Sequence[int]]
) -> np.ndarray:
    """``(rounds,)``: max over ``patterns`` (participation rounds, 0-based) of the sensitivity,
    in clip norms, of the rows of C released by round t: ``√Σ_{i,j∈π} |G_t[i, j]|`` with
    ``G_t = Σ_{rows released ≤ t} r rᵀ``."""
    rounds = strategy.shape[1]
    if not patterns:
        return np.zeros(rounds)
    if np.all(strategy >= 0):
        return _nonnegative_prefix(strategy, release_round, patterns)
    return _signed_prefix(strategy, release_round, patterns)


def _nonnegative_prefix(
    strategy: np.ndarray, release_round: np.ndarray, patterns: Sequence[Sequence[int]]
) -> np.ndarray:
    """C ≥ 0: |G| = G, so ``Σ_{i,j∈π} G_t[i, j] = ‖C_{≤t} 1_π‖²`` grows row by row."""
    rounds = strategy.shape[1]
    indicator = np.zeros((len(patterns), rounds))  # (patterns, rounds)
    for g, pattern in enumerate(patterns):
        indicator[g, list(pattern)] = 1.0
    out = np.zeros(rounds)
    squared = np.zeros(len(patterns))
    for t in range(rounds):
        rows = strategy[release_round == t]  # (new rows, rounds)
        squared += np.sum((rows @ indicator.T) ** 2, axis=0)
        out[t] = math.sqrt(squared.max())
    return out


def _signed_prefix(
    strategy: np.ndarray, release_round: np.ndarray, patterns: Sequence[Sequence[int]]
) -> np.ndarray:
    """Any sign: a released row r changes G only on its support S × S, so each pattern's
    ``Σ |G|`` is updated there (cost Σ_rows |S|² per pattern, not rounds² per round)."""
    rounds = strategy.shape[1]
    members = [np.zeros(rounds, dtype=bool) for _ in patterns]
    for mask, pattern in zip(members, patterns, strict=True):
        mask[list(pattern)] = True
    gram = np.zeros((rounds, rounds))
    totals = np.zeros(len(patterns))
    out = np.zeros(rounds)
    for t in range(rounds):
        for row in strategy[release_round == t]:
            support = np.flatnonzero(row)
            block = np.ix_(support, support)
            before = np.abs(gram[block])
            gram[block] += np.outer(row[support], row[support])
            change = np.abs(gram[block]) - before  # (|S|, |S|)
            for g, mask in enumerate(members):
                inside = mask[support]
                totals[g] += change[np.ix_(inside, inside)].sum()
        out[t] = math.sqrt(max(totals.max(), 0.0))
    return out


@dataclass(frozen=True)
class RunFinding:
    name: str
    failure: str | None
    passed: str


def run_findings(
    derivation: MatrixDerivation,
    spec: RunSpec,
    rounds: Sequence[RoundEvents],
    records: Sequence[Mapping[str, Any]],
) -> list[RunFinding]:
    """The schedule and realised-sensitivity checks of one matrix mechanism over the run."""
    path = derivation.slot.path
    taken, rederived = participants(spec, records)
    note = (
        f" ({rederived} rounds' cohorts re-derived from the keyed schedule: their records list "
        "no participants)"
        if rederived
        else ""
    )
    b = derivation.separation
    schedule_check = RunFinding(
        f"{path} schedule",
        schedule_failure(spec, taken),
        f"{sum(len(ids) for ids in taken)} participations by {len(set().union(*taken))} clients "
        f"respect clients.min_separation {b}{note}",
    )
    by_client: dict[int, list[int]] = {}
    for t, ids in enumerate(taken):
        for cid in ids:
            by_client.setdefault(cid, []).append(t)
    patterns = sorted({tuple(p) for p in by_client.values()})
    horizon = derivation.strategy.shape[1]
    patterns = [tuple(t for t in p if t < horizon) for p in patterns]
    realised = realised_prefix_sensitivity(derivation.strategy, derivation.release_round, patterns)
    claimed, composed = 0.0, 0.0  # the ledger's prefix sensitivity and Σ 1/z_i² so far
    failure: str | None = None
    z = derivation.noise_multiplier
    for r in rounds:
        t = r.number - 1
        if t >= horizon:
            break
        for event in r.population:
            inner, rate = _inner(event)
            if isinstance(inner, MatrixGaussian):
                claimed = max(claimed, float(inner.prefix_sensitivity))
                if rate is None:
                    composed += 1.0 / inner.noise_multiplier**2
        s = float(realised[t])
        if s > claimed * (1 + _SLACK) + 1e-12:
            failure = (
                f"ledger round {r.number}: the prefix sensitivity it states is {claimed:.6g} "
                f"clip norms, but the participation in rounds.jsonl realises {s:.6g} under "
                f"spec.yaml's {path} ({derivation.slot.name}): the ledger under-reports."
            )
            break
        if derivation.rate == 1.0 and s > 0 and math.sqrt(composed) < (s / z) * (1 - _SLACK):
            failure = (
                f"ledger round {r.number}: its multipliers compose to μ = {math.sqrt(composed):.6g}"
                f" but the participation in rounds.jsonl realises sensitivity {s:.6g} at "
                f"spec.yaml's {path}.noise_multiplier {z:g} (μ = {s / z:.6g}): the ledger "
                "under-reports."
            )
            break
    final = float(realised[min(len(rounds), horizon) - 1]) if rounds else 0.0
    most = max((len(p) for p in patterns), default=0)
    sensitivity_check = RunFinding(
        f"{path} realised sensitivity",
        failure,
        f"{derivation.slot.name} realised sensitivity {final:.4g} ≤ ledger's {claimed:.4g} clip norms "
        f"(at most {most} participations of a client)",
    )
    return [schedule_check, sensitivity_check]


__all__ = [
    "MATRIX_MECHANISMS",
    "MatrixDerivation",
    "RunFinding",
    "derive",
    "event_findings",
    "participants",
    "realised_prefix_sensitivity",
    "run_findings",
    "schedule",
    "schedule_failure",
]
