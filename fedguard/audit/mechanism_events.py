"""The privacy event each DP mechanism files, as a function of its parameters and the round.

One rule per mechanism (by registry name), used by :mod:`fedguard.audit.ledger_checks`: from the
spec's parameters of the mechanism, the event the ledger holds for a round and that round's
record, a rule returns ``(check name, failure sentence or None)`` findings. ``k`` is the
sensitivity of a clipped sum in clip norms: 1 under add/remove (Poisson, all clients), 2 under
replace-one (a fixed cohort), so a fixed cohort records the multiplier z/2 (as ``defenses/dp``
documents).

References
----------
McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
ICLR 2018 (DP-FedAvg: Gaussian of multiplier z on a sum clipped to C).
Andrew, Thakkar, McMahan, Ramaswamy. "Differentially Private Learning with Adaptive Clipping."
NeurIPS 2021 (two Gaussian queries composing to one multiplier z).
Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation." ICML 2021; Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially
Private Federated Learning." NeurIPS 2021 (per-client lattice noise z·C·scale/√qW).
Abadi et al. "Deep Learning with Differential Privacy." CCS 2016 (DP-SGD).
Youn, Hu, Ziani, Abernethy. "Randomized Quantization is All You Need for Differential Privacy in
Federated Learning." 2023 (RQM).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fedguard.config import RunSpec
from fedguard.privacy.events import (
    Composed,
    DiscreteGaussian,
    Gaussian,
    PrivacyEvent,
    RandomizedQuantization,
    Sampled,
    Skellam,
    effective_gaussian_multiplier,
    iter_events,
)

REL_TOL = 1e-9


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def num(value: Any) -> str:
    return (
        f"{value:g}"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else repr(value)
    )


def relation_factor(sampling: Mapping[str, Any]) -> int:
    """Sensitivity of a clipped sum in units of the clip: 1 (add/remove) or 2 (replace-one)."""
    return 2 if sampling["neighbouring_relation"] == "replace_one" else 1


def cohort(record: Mapping[str, Any]) -> int:
    """The record's number of sampled clients (0 if it holds no integer: the participants
    check reports that record)."""
    n = record.get("clients")
    return n if isinstance(n, int) and not isinstance(n, bool) else 0


def free_riders(record: Mapping[str, Any]) -> set[int]:
    ids = record.get("free_riders")
    return {i for i in ids if isinstance(i, int)} if isinstance(ids, list) else set()


@dataclass(frozen=True)
class RoundEvents:
    """One ledger round, parsed: its population events and each client's (event, level)."""

    number: int
    population: tuple[PrivacyEvent, ...]
    clients: dict[int, tuple[tuple[PrivacyEvent, str], ...]]  # id → (event, level)


@dataclass(frozen=True)
class Slot:
    """A DP mechanism of the spec: where it is, its registry name, parameters and stage."""

    path: str  # "defense.server_transforms[0]"
    name: str
    params: Mapping[str, Any]
    stage: str


Finding = tuple[str, str | None]  # (check name, failure sentence or None)
PopulationRule = Callable[
    [Slot, PrivacyEvent, int, Mapping[str, Any], RunSpec, Mapping[str, Any]], list[Finding]
]


def _unsampled(event: PrivacyEvent) -> PrivacyEvent:
    return event.event if isinstance(event, Sampled) else event


def _compare(
    slot: Slot,
    t: int,
    field_name: str,
    actual: float,
    expected: float,
    source: str,
    note: str = "",
) -> Finding:
    """``(check name, failure or None)`` for one number the ledger must hold."""
    key = f"{slot.path}.{source}"
    if close(actual, expected):
        return key, None
    spec_value = slot.params.get(source)
    if close(expected, float(spec_value)) if isinstance(spec_value, int | float) else False:
        return key, (
            f"ledger round {t}: {field_name} {actual:g} does not match spec.yaml's "
            f"{slot.path}.{source} {expected:g}."
        )
    return key, (
        f"ledger round {t}: {field_name} {actual:g} does not match {expected:g}, implied by "
        f"spec.yaml's {slot.path}.{source} {num(spec_value)}{note}."
    )


def _type_finding(slot: Slot, t: int, event: PrivacyEvent, wanted: str) -> Finding:
    return f"{slot.path}.event", (
        f"ledger round {t}: the event filed for spec.yaml's {slot.path} ({slot.name}) is "
        f"{type(event).__name__}, not {wanted}."
    )


def _relation_note(sampling: Mapping[str, Any]) -> str:
    return (
        " under the replace-one relation of a fixed cohort"
        if relation_factor(sampling) == 2
        else ""
    )


def _gaussian_rule(clip_param: str | None, exact_sensitivity: bool) -> PopulationRule:
    """A Gaussian on a sum of vectors clipped to ``params[clip_param]``, sampled as the run:
    multiplier z/k and sensitivity k·C (k = 2 under replace-one)."""

    def rule(
        slot: Slot,
        event: PrivacyEvent,
        t: int,
        record: Mapping[str, Any],
        spec: RunSpec,
        sampling: Mapping[str, Any],
    ) -> list[Finding]:
        inner = _unsampled(event)
        if not isinstance(inner, Gaussian):
            return [_type_finding(slot, t, inner, "a Gaussian")]
        k = relation_factor(sampling)
        z = float(slot.params.get("noise_multiplier", math.nan))
        note = _relation_note(sampling)
        found = [
            _compare(
                slot, t, "noise_multiplier", inner.noise_multiplier, z / k, "noise_multiplier", note
            )
        ]
        if exact_sensitivity and clip_param is not None:
            clip = float(slot.params.get(clip_param, math.nan))
            found.append(
                _compare(slot, t, "sensitivity", inner.sensitivity, k * clip, clip_param, note)
            )
        return found

    return rule


def _central_gaussian(
    slot: Slot,
    event: PrivacyEvent,
    t: int,
    record: Mapping[str, Any],
    spec: RunSpec,
    sampling: Mapping[str, Any],
) -> list[Finding]:
    mean_path = spec.defense.aggregator.name == "mean" and not spec.defense.preaggregators
    if mean_path:
        return _gaussian_rule("clip_norm", True)(slot, event, t, record, spec, sampling)
    # an aggregator's own sensitivity bound (fixed cohort): the multiplier is z itself
    inner = _unsampled(event)
    if not isinstance(inner, Gaussian):
        return [_type_finding(slot, t, inner, "a Gaussian")]
    z = float(slot.params.get("noise_multiplier", math.nan))
    return [_compare(slot, t, "noise_multiplier", inner.noise_multiplier, z, "noise_multiplier")]


def _distributed_gaussian(
    slot: Slot,
    event: PrivacyEvent,
    t: int,
    record: Mapping[str, Any],
    spec: RunSpec,
    sampling: Mapping[str, Any],
) -> list[Finding]:
    inner = _unsampled(event)
    if not isinstance(inner, Gaussian):
        return [_type_finding(slot, t, inner, "a Gaussian")]
    k = relation_factor(sampling)
    z = float(slot.params.get("noise_multiplier", math.nan))
    clip = float(slot.params.get("clip_norm", math.nan))
    senders = cohort(record) - len(free_riders(record))
    honest = max(senders - spec.n_byzantine, 0)
    std = z * clip * math.sqrt(honest / float(sampling["expected_cohort"]))
    note = (
        f" with {honest} guaranteed-honest senders (rounds.jsonl round {t}: {senders} senders, "
        f"n_byzantine {spec.n_byzantine}){_relation_note(sampling)}"
    )
    return [
        _compare(slot, t, "sensitivity", inner.sensitivity, k * clip, "clip_norm"),
        _compare(
            slot,
            t,
            "noise_multiplier",
            inner.noise_multiplier,
            std / (k * clip),
            "noise_multiplier",
            note,
        ),
    ]


def _adaptive_clipping(
    slot: Slot,
    event: PrivacyEvent,
    t: int,
    record: Mapping[str, Any],
    spec: RunSpec,
    sampling: Mapping[str, Any],
) -> list[Finding]:
    inner = _unsampled(event)
    effective = effective_gaussian_multiplier(inner)
    if not isinstance(inner, Composed) or effective is None:
        return [_type_finding(slot, t, inner, "a composition of Gaussians")]
    z = float(slot.params.get("noise_multiplier", math.nan))
    k = relation_factor(sampling)
    note = " (the clip-count and update queries composed)" + _relation_note(sampling)
    return [
        _compare(slot, t, "effective noise_multiplier", effective, z / k, "noise_multiplier", note)
    ]


def _local_lattice_stddev(slot: Slot, sampling: Mapping[str, Any]) -> float:
    """One client's lattice noise std z·C·scale/√(qW) (qW: expected_clients or the run's)."""
    p = slot.params
    expected = p.get("expected_clients") or sampling["expected_cohort"]
    z, clip, scale = (float(p.get(k, math.nan)) for k in ("noise_multiplier", "clip_norm", "scale"))
    return z * clip * scale / math.sqrt(float(expected))


def _secagg_discrete_gaussian(
    slot: Slot,
    event: PrivacyEvent,
    t: int,
    record: Mapping[str, Any],
    spec: RunSpec,
    sampling: Mapping[str, Any],
) -> list[Finding]:
    if not isinstance(event, DiscreteGaussian):
        return [_type_finding(slot, t, event, "a DiscreteGaussian")]
    sigma = _local_lattice_stddev(slot, sampling)
    note = " (z·C·scale/√qW, lattice units)"
    return [
        _survivors(slot, t, event.n_clients, record, spec),
        _compare(
            slot, t, "local_noise_stddev", event.local_noise_stddev, sigma, "noise_multiplier", note
        ),
    ]


def _secagg_skellam(
    slot: Slot,
    event: PrivacyEvent,
    t: int,
    record: Mapping[str, Any],
    spec: RunSpec,
    sampling: Mapping[str, Any],
) -> list[Finding]:
    if not isinstance(event, Skellam):
        return [_type_finding(slot, t, event, "a Skellam")]
    survivors = record.get("transport_survivors")
    finding = _survivors(slot, t, None, record, spec)
    if finding[1] is not None or not isinstance(survivors, int):
        return [finding]
    honest = survivors - spec.n_byzantine
    variance = honest * _local_lattice_stddev(slot, sampling) ** 2
    note = (
        f" for {honest} honest survivors (rounds.jsonl round {t}: transport_survivors {survivors}, "
        f"n_byzantine {spec.n_byzantine}; (z·C·scale)²/qW each, lattice units)"
    )
    return [
        finding,
        _compare(slot, t, "variance", event.variance, variance, "noise_multiplier", note),
    ]


def _survivors(
    slot: Slot, t: int, n_clients: int | None, record: Mapping[str, Any], spec: RunSpec
) -> Finding:
    """The noise's honest clients are the round's survivors beyond n_byzantine (``n_clients``
    None: only that the record states its survivors)."""
    key = f"{slot.path} survivors"
    survivors = record.get("transport_survivors")
    if not isinstance(survivors, int):
        return key, (
            f"rounds.jsonl round {t} does not record transport_survivors, which spec.yaml's "
            f"{slot.path} ({slot.name}) reports every round."
        )
    honest = survivors - spec.n_byzantine
    if n_clients is None or n_clients == honest:
        return key, None
    return key, (
        f"ledger round {t}: n_clients {n_clients} does not match rounds.jsonl's "
        f"transport_survivors {survivors} minus spec.yaml's n_byzantine {spec.n_byzantine}."
    )


POPULATION_RULES: dict[str, PopulationRule] = {
    "central_gaussian": _central_gaussian,
    "dp_brem_cc": _gaussian_rule("clip_radius", True),
    "dp_brem": _gaussian_rule(None, False),  # sensitivity S_t grows with the round (momentum)
    "distributed_gaussian": _distributed_gaussian,
    "adaptive_clipping": _adaptive_clipping,
    "secagg_discrete_gaussian": _secagg_discrete_gaussian,
    "secagg_skellam": _secagg_skellam,
}


def client_rule(
    slot: Slot, r: RoundEvents, record: Mapping[str, Any], spec: RunSpec
) -> list[Finding]:
    """dp_sgd: one record-level event per client that trained, multiplier z; rqm: one
    RandomizedQuantization per client with the spec's parameters."""
    t = r.number
    free = free_riders(record)
    trained = cohort(record) - len(free)
    if record.get("clients") == 0:
        trained = 0
    mine: dict[int, list[PrivacyEvent]] = {}
    for cid, events in r.clients.items():
        for event, level in events:
            if slot.name == "dp_sgd" and level == "record":
                mine.setdefault(cid, []).append(event)
            elif slot.name == "rqm" and isinstance(event, RandomizedQuantization):
                mine.setdefault(cid, []).append(event)
    count_key = f"{slot.path} participants"
    found: list[Finding] = []
    bad_ids = sorted(c for c in mine if c in free or not 0 <= c < spec.clients.n_clients)
    if bad_ids:
        found.append((count_key, (
            f"ledger round {t}: client {bad_ids[0]} has {slot.name} events but is not a client "
            f"that trained in rounds.jsonl round {t}."
        )))  # fmt: skip
    elif len(mine) != trained:
        found.append((count_key, (
            f"ledger round {t}: {len(mine)} clients have {slot.name} events but rounds.jsonl "
            f"round {t} has {trained} clients that trained."
        )))  # fmt: skip
    else:
        found.append((count_key, None))
    for cid, own in sorted(mine.items()):
        for event in own:
            if slot.name == "dp_sgd":
                leaves = [e for e in iter_events(event) if isinstance(e, Gaussian)]
                if not leaves:
                    found.append(_type_finding(slot, t, event, "a sampled Gaussian"))
                    continue
                z = float(slot.params.get("noise_multiplier", math.nan))
                for leaf in leaves:
                    found.append(
                        _compare(
                            slot,
                            t,
                            f"client {cid} noise_multiplier",
                            leaf.noise_multiplier,
                            z,
                            "noise_multiplier",
                        )
                    )
            else:
                assert isinstance(event, RandomizedQuantization)
                for name in ("clip", "padding", "levels", "keep_probability"):
                    actual = float(getattr(event, name))
                    found.append(
                        _compare(
                            slot,
                            t,
                            f"client {cid} {name}",
                            actual,
                            float(slot.params.get(name, math.nan)),
                            name,
                        )
                    )
    return found


__all__ = [
    "POPULATION_RULES",
    "Finding",
    "RoundEvents",
    "Slot",
    "client_rule",
    "close",
    "cohort",
    "free_riders",
    "num",
    "relation_factor",
]
