"""Privacy events: what a mechanism did, as data.

A mechanism never computes ε itself. It returns a :class:`PrivacyEvent` describing what it did
(Gaussian noise of a given multiplier, on a Poisson-sampled cohort, repeated T times, ...); the
:mod:`fedguard.privacy.ledger` stores the events as JSON and the accountants in
:mod:`fedguard.privacy.accountants` turn them into ε. Every event is a frozen, hashable dataclass
with ``to_dict()`` / ``from_dict()`` (JSON-safe, tagged by ``"type"``).

Conventions
-----------
- ``Gaussian.noise_multiplier`` is the noise standard deviation divided by the L2 sensitivity
  *under the ledger's neighbouring relation* (``sensitivity``): noise std =
  ``noise_multiplier * sensitivity``. A sum of updates clipped to ``clip_norm`` has sensitivity
  ``clip_norm`` under add/remove but ``2 * clip_norm`` under replace-one; use
  :func:`gaussian_for_sum` so that the multiplier is computed for the right relation.
- ``Sampled(scheme="poisson")`` is accounted under the add/remove relation (Mironov et al. 2019);
  ``Sampled(scheme="without_replacement")`` — a fixed cohort of exactly ``rate * population``
  units — under replace-one (Wang, Balle & Kasiviswanathan 2019). The two differ a lot and are
  never accounted as each other.
- Discrete events (:class:`DiscreteGaussian`, :class:`Skellam`) are in lattice units: the values
  after scaling by ``1 / granularity``, so sensitivities and standard deviations are integers'
  scale.
- :class:`RandomizedQuantization` is a local randomizer: its guarantee holds for any change of one
  unit's input vector (each coordinate in ``[-clip, clip]``), composed over ``coordinates``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from fedguard.errors import ConfigError
from fedguard.errors import require as _require

Scheme = Literal["poisson", "without_replacement"]
Relation = Literal["add_remove", "replace_one"]
Level = Literal["client", "record", "user"]

SCHEMES: tuple[str, ...] = ("poisson", "without_replacement")
RELATIONS: tuple[str, ...] = ("add_remove", "replace_one")
#: "user": one person's records in every silo (user-level DP across silos, ULDP-AVG)
LEVELS: tuple[str, ...] = ("client", "record", "user")
#: What each level protects, in words.
LEVEL_DESCRIPTIONS: dict[str, str] = {
    "client": "one client's entire dataset",
    "record": "one record",
    "user": "one user's records in every silo",
}
#: The neighbouring relation each sampling scheme is accounted under.
RELATION_OF_SCHEME: dict[str, str] = {"poisson": "add_remove", "without_replacement": "replace_one"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_float(value: Any, field_name: str) -> float:
    _require(
        _is_number(value) and math.isfinite(value) and value > 0,
        field_name,
        f"a finite number > 0 (got {value!r})",
    )
    return float(value)


def _positive_int(value: Any, field_name: str) -> int:
    ok = (_is_number(value) and float(value).is_integer()) and value >= 1
    _require(ok, field_name, f"an integer >= 1 (got {value!r})")
    return int(value)


class PrivacyEvent:
    """Base class of every privacy event (frozen dataclasses, hashable, JSON-serialisable)."""

    #: The ``"type"`` tag in the event's JSON form.
    type_tag: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the fields plus a ``"type"`` tag; nested events become dicts."""
        out: dict[str, Any] = {"type": self.type_tag}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, PrivacyEvent):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyEvent:
        """Inverse of :meth:`to_dict`; on a subclass, also checks that the tag matches."""
        event = event_from_dict(data)
        if cls is not PrivacyEvent and not isinstance(event, cls):
            raise ConfigError(
                f"privacy event type must be {cls.type_tag!r} here (got {data.get('type')!r})."
            )
        return event


_EVENT_TYPES: dict[str, type[PrivacyEvent]] = {}


def _register(cls: type[PrivacyEvent]) -> type[PrivacyEvent]:
    _EVENT_TYPES[cls.type_tag] = cls
    return cls


@_register
@dataclass(frozen=True)
class Gaussian(PrivacyEvent):
    """Additive Gaussian noise N(0, (noise_multiplier · sensitivity)² I) on a query.

    ``sensitivity`` is the query's L2 sensitivity under the ledger's neighbouring relation (e.g.
    the clip norm of a clipped sum under add/remove); accountants use only ``noise_multiplier``.
    """

    type_tag: ClassVar[str] = "gaussian"
    noise_multiplier: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "noise_multiplier", _positive_float(self.noise_multiplier, "noise_multiplier")
        )
        object.__setattr__(self, "sensitivity", _positive_float(self.sensitivity, "sensitivity"))

    @property
    def noise_stddev(self) -> float:
        """Standard deviation of the noise actually added: ``noise_multiplier * sensitivity``."""
        return self.noise_multiplier * self.sensitivity


@_register
@dataclass(frozen=True)
class Sampled(PrivacyEvent):
    """``event`` applied to a random subset of the units, each present with rate ``rate``.

    ``scheme="poisson"``: each unit independently with probability ``rate`` (add/remove);
    ``scheme="without_replacement"`` (alias ``"fixed"``): a uniformly random subset of exactly
    ``rate * population`` units (replace-one). ``population`` is recorded when known.
    """

    type_tag: ClassVar[str] = "sampled"
    rate: float
    event: PrivacyEvent
    scheme: str = "poisson"
    population: int | None = None

    def __post_init__(self) -> None:
        rate = self.rate
        _require(
            _is_number(rate) and math.isfinite(rate) and 0 < rate <= 1,
            "rate",
            f"a sampling rate in (0, 1] (got {rate!r})",
        )
        object.__setattr__(self, "rate", float(rate))
        scheme = "without_replacement" if self.scheme == "fixed" else self.scheme
        _require(
            scheme in SCHEMES,
            "scheme",
            f"'poisson' or 'without_replacement' (alias 'fixed') (got {self.scheme!r})",
        )
        object.__setattr__(self, "scheme", scheme)
        if isinstance(self.event, Mapping):
            object.__setattr__(self, "event", event_from_dict(self.event))
        _require(isinstance(self.event, PrivacyEvent), "event", "a privacy event")
        if self.population is not None:
            population = _positive_int(self.population, "population")
            object.__setattr__(self, "population", population)
            if scheme == "without_replacement":
                cohort = self.rate * population
                _require(
                    abs(cohort - round(cohort)) <= 1e-6 * max(1.0, cohort),
                    "rate",
                    f"cohort_size / population for a fixed cohort (rate * population = {cohort})",
                )

    @property
    def relation(self) -> str:
        """The neighbouring relation this sampling scheme is accounted under."""
        return RELATION_OF_SCHEME[self.scheme]


@_register
@dataclass(frozen=True)
class Composed(PrivacyEvent):
    """Sequential composition of ``events``, the whole sequence repeated ``count`` times."""

    type_tag: ClassVar[str] = "composed"
    events: tuple[PrivacyEvent, ...]
    count: int = 1

    def __post_init__(self) -> None:
        events = tuple(
            event_from_dict(e) if isinstance(e, Mapping) else e for e in tuple(self.events)
        )
        _require(len(events) > 0, "events", "a non-empty sequence of privacy events")
        _require(all(isinstance(e, PrivacyEvent) for e in events), "events", "privacy events only")
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "count", _positive_int(self.count, "count"))


@_register
@dataclass(frozen=True)
class RandomizedQuantization(PrivacyEvent):
    """The Randomized Quantization Mechanism (Youn et al. 2023) on ``coordinates`` values.

    Each coordinate is clipped to ``[-clip, clip]`` and quantized onto ``levels`` levels spanning
    ``[-(clip + padding), clip + padding]``; interior levels are kept with ``keep_probability``.

    References
    ----------
    Youn, Hu, Ziani, Abernethy. "Randomized Quantization is All You Need for Differential
    Privacy in Federated Learning." 2023.
    """

    type_tag: ClassVar[str] = "randomized_quantization"
    clip: float
    padding: float
    levels: int
    keep_probability: float
    coordinates: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", _positive_float(self.clip, "clip"))
        object.__setattr__(self, "padding", _positive_float(self.padding, "padding"))
        levels = self.levels
        _require(
            _is_number(levels) and float(levels).is_integer() and levels >= 2,
            "levels",
            f"an integer >= 2 (got {levels!r})",
        )
        object.__setattr__(self, "levels", int(levels))
        q = self.keep_probability
        _require(
            _is_number(q) and 0 < q <= 1,
            "keep_probability",
            f"a probability in (0, 1] (got {q!r})",
        )
        object.__setattr__(self, "keep_probability", float(q))
        object.__setattr__(self, "coordinates", _positive_int(self.coordinates, "coordinates"))


def _integer_l1_default(l2: float, dimension: int) -> float:
    # For integer vectors ‖Δ‖₁ ≤ ‖Δ‖₂² (each non-zero |Δ_i| ≥ 1) and ‖Δ‖₁ ≤ √d ‖Δ‖₂.
    return min(math.sqrt(dimension) * l2, l2 * l2)


@_register
@dataclass(frozen=True)
class DiscreteGaussian(PrivacyEvent):
    """Distributed discrete Gaussian: ``n_clients`` each add N_Z(0, local_noise_stddev²) noise.

    Lattice units (values divided by the granularity γ). ``n_clients`` counts only the honest,
    surviving clients whose noise is in the sum. ``l1_sensitivity`` defaults to
    ``min(√d · l2, l2²)``, valid for integer-valued differences.

    References
    ----------
    Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning with
    Secure Aggregation." ICML 2021.
    """

    type_tag: ClassVar[str] = "discrete_gaussian"
    local_noise_stddev: float
    n_clients: int
    l2_sensitivity: float
    dimension: int
    l1_sensitivity: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "local_noise_stddev",
            _positive_float(self.local_noise_stddev, "local_noise_stddev"),
        )
        object.__setattr__(self, "n_clients", _positive_int(self.n_clients, "n_clients"))
        l2 = _positive_float(self.l2_sensitivity, "l2_sensitivity")
        object.__setattr__(self, "l2_sensitivity", l2)
        dim = _positive_int(self.dimension, "dimension")
        object.__setattr__(self, "dimension", dim)
        if self.l1_sensitivity is None:
            object.__setattr__(self, "l1_sensitivity", _integer_l1_default(l2, dim))
        else:
            object.__setattr__(
                self, "l1_sensitivity", _positive_float(self.l1_sensitivity, "l1_sensitivity")
            )


@_register
@dataclass(frozen=True)
class Skellam(PrivacyEvent):
    """Skellam noise of total per-coordinate ``variance`` (sum of every client's share).

    Lattice units. The sum of independent symmetric Skellam shares is Skellam with the summed
    variance, so a distributed mechanism records the variance its honest, surviving clients
    added. ``l1_sensitivity`` defaults to ``min(√d · l2, l2²)`` (integer differences).

    References
    ----------
    Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private Federated Learning."
    NeurIPS 2021.
    """

    type_tag: ClassVar[str] = "skellam"
    variance: float
    l2_sensitivity: float
    dimension: int
    l1_sensitivity: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variance", _positive_float(self.variance, "variance"))
        l2 = _positive_float(self.l2_sensitivity, "l2_sensitivity")
        object.__setattr__(self, "l2_sensitivity", l2)
        dim = _positive_int(self.dimension, "dimension")
        object.__setattr__(self, "dimension", dim)
        if self.l1_sensitivity is None:
            object.__setattr__(self, "l1_sensitivity", _integer_l1_default(l2, dim))
        else:
            object.__setattr__(
                self, "l1_sensitivity", _positive_float(self.l1_sensitivity, "l1_sensitivity")
            )


@dataclass(frozen=True)
class PrivacyUnit:
    """Whose privacy a ledger protects, and against which change.

    ``level``: ``"client"`` (a client's whole dataset) or ``"record"`` (one training example);
    ``relation``: ``"add_remove"`` (a unit is added or removed) or ``"replace_one"`` (a unit is
    replaced; the population size is public). ``description`` says it in words.
    """

    level: str = "client"
    relation: str = "add_remove"
    description: str = ""

    def __post_init__(self) -> None:
        _require(self.level in LEVELS, "level", f"one of {LEVELS} (got {self.level!r})")
        _require(
            self.relation in RELATIONS,
            "relation",
            f"'add_remove' or 'replace_one' (got {self.relation!r})",
        )
        if not self.description:
            what = LEVEL_DESCRIPTIONS[self.level]
            how = "added or removed" if self.relation == "add_remove" else "replaced"
            object.__setattr__(self, "description", f"{what}, {how}")

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "relation": self.relation, "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyUnit:
        try:
            return cls(
                level=data["level"],
                relation=data["relation"],
                description=data.get("description", ""),
            )
        except (KeyError, TypeError) as err:
            raise ConfigError(
                f"privacy unit must have 'level' and 'relation' (got {dict(data)!r})."
            ) from err


@dataclass(frozen=True)
class ClientEvent:
    """``event`` incurred by one client only (its local DP-SGD steps, its RQM release).

    What a mechanism returns in ``TransformOutput.events`` for per-client privacy; the round loop
    files it under ``clients[client]`` in the run's ledger. ``level`` is the privacy unit the
    event protects: ``"client"`` (the client's whole dataset) or ``"record"`` (one example, as for
    DP-SGD inside local training). Its dict form is the event's plus ``"client"`` (and
    ``"level"`` when it is not ``"client"``).
    """

    client: int
    event: PrivacyEvent
    level: str = "client"

    def __post_init__(self) -> None:
        _require(
            isinstance(self.client, int) and not isinstance(self.client, bool),
            "client",
            f"an integer client id (got {self.client!r})",
        )
        _require(isinstance(self.event, PrivacyEvent), "event", "a privacy event")
        _require(self.level in LEVELS, "level", f"one of {LEVELS} (got {self.level!r})")

    def to_dict(self) -> dict[str, Any]:
        out = self.event.to_dict()
        out["client"] = self.client
        if self.level != "client":
            out["level"] = self.level
        return out


@dataclass(frozen=True)
class UnitEvent:
    """``event`` incurred by every member of the population at privacy ``level`` other than
    the client — e.g. each user under ULDP-AVG (user-level DP across silos), where one user's
    records are spread over several clients. The round loop files it with the population events;
    its dict form is the event's plus ``"level"``.
    """

    event: PrivacyEvent
    level: str = "user"

    def __post_init__(self) -> None:
        _require(isinstance(self.event, PrivacyEvent), "event", "a privacy event")
        _require(self.level in LEVELS, "level", f"one of {LEVELS} (got {self.level!r})")

    def to_dict(self) -> dict[str, Any]:
        out = self.event.to_dict()
        if self.level != "client":
            out["level"] = self.level
        return out


def event_from_dict(data: Mapping[str, Any]) -> PrivacyEvent:
    """Rebuild an event (recursively) from its :meth:`PrivacyEvent.to_dict` form."""
    _require(isinstance(data, Mapping), "privacy event", "a JSON object with a 'type' tag")
    tag = data.get("type")
    cls = _EVENT_TYPES.get(str(tag))
    _require(cls is not None, "privacy event type", f"one of {sorted(_EVENT_TYPES)} (got {tag!r})")
    assert cls is not None
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names - {"type"}
    _require(not unknown, f"{tag} event", f"free of unknown fields {sorted(unknown)}")
    kwargs: dict[str, Any] = {k: v for k, v in data.items() if k != "type"}
    if "event" in kwargs:
        kwargs["event"] = event_from_dict(kwargs["event"])
    if "events" in kwargs:
        _require(isinstance(kwargs["events"], list | tuple), "events", "a list of events")
        kwargs["events"] = tuple(event_from_dict(e) for e in kwargs["events"])
    try:
        return cls(**kwargs)
    except TypeError as err:
        missing = sorted(names - set(kwargs))
        raise ConfigError(f"{tag} event is missing fields {missing}.") from err


# --------------------------------------------------------------------------------------------
# Helpers


def leaf_counts(event: PrivacyEvent) -> dict[PrivacyEvent, int]:
    """The non-composed events of ``event`` with how many times each is composed.

    ``Composed`` nodes are flattened (counts multiply); every other event is a leaf. Order of
    first appearance is kept.
    """
    counts: dict[PrivacyEvent, int] = {}

    def walk(e: PrivacyEvent, mult: int) -> None:
        if isinstance(e, Composed):
            for child in e.events:
                walk(child, mult * e.count)
        else:
            counts[e] = counts.get(e, 0) + mult

    walk(event, 1)
    return counts


def iter_events(event: PrivacyEvent) -> Iterator[PrivacyEvent]:
    """Every node of the event tree, depth first (the root first)."""
    yield event
    if isinstance(event, Composed):
        for child in event.events:
            yield from iter_events(child)
    elif isinstance(event, Sampled):
        yield from iter_events(event.event)


def compose(events: Mapping[PrivacyEvent, int] | list[PrivacyEvent]) -> PrivacyEvent:
    """A compact event for a multiset of events (identical events merged into counts)."""
    counts: dict[PrivacyEvent, int] = {}
    items = events.items() if isinstance(events, Mapping) else ((e, 1) for e in events)
    for e, c in items:
        for leaf, k in leaf_counts(e).items():
            counts[leaf] = counts.get(leaf, 0) + k * c
    _require(len(counts) > 0, "events", "non-empty to compose")
    if len(counts) == 1:
        ((leaf, k),) = counts.items()
        return leaf if k == 1 else Composed((leaf,), count=k)
    return Composed(tuple(Composed((e,), count=k) if k > 1 else e for e, k in counts.items()))


def gaussian_for_sum(clip_norm: float, noise_stddev: float, relation: str) -> Gaussian:
    """The event of N(0, noise_stddev² I) added to a sum of vectors clipped to ``clip_norm``.

    Sensitivity is ``clip_norm`` under add/remove and ``2 * clip_norm`` under replace-one (one
    clipped vector swapped for another moves the sum by up to twice the clip norm).
    """
    _require(relation in RELATIONS, "relation", f"'add_remove' or 'replace_one' (got {relation!r})")
    clip = _positive_float(clip_norm, "clip_norm")
    std = _positive_float(noise_stddev, "noise_stddev")
    sensitivity = clip if relation == "add_remove" else 2.0 * clip
    return Gaussian(noise_multiplier=std / sensitivity, sensitivity=sensitivity)


def sampled_gaussian(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int = 1,
    scheme: str = "poisson",
    population: int | None = None,
) -> PrivacyEvent:
    """``steps`` compositions of a sampled Gaussian (DP-SGD / DP-FedAvg); the CLI calculator's
    event. ``sampling_rate == 1`` gives plain Gaussian steps."""
    return _sampled_steps(Gaussian(noise_multiplier), sampling_rate, steps, scheme, population)


def _sampled_steps(
    gaussian: Gaussian, sampling_rate: float, steps: int, scheme: str, population: int | None
) -> PrivacyEvent:
    inner: PrivacyEvent = (
        gaussian
        if sampling_rate == 1
        else Sampled(sampling_rate, gaussian, scheme=scheme, population=population)
    )
    steps = _positive_int(steps, "steps")
    return inner if steps == 1 else Composed((inner,), count=steps)


def clipped_sum_gaussian(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int = 1,
    scheme: str = "poisson",
    population: int | None = None,
) -> PrivacyEvent:
    """``steps`` rounds of DP-FedAvg / DP-SGD with ``noise_multiplier`` = noise std ÷ clip norm.

    This is the meaning of ``noise_multiplier`` in every run config and on the command line. The
    event's own :class:`Gaussian` multiplier is relative to the sensitivity under the scheme's
    neighbouring relation (:func:`gaussian_for_sum`): the clip norm C under add/remove (Poisson),
    2C under replace-one (a fixed cohort), i.e. ``noise_multiplier / 2`` there. So the calculator
    given a run's own parameters accounts exactly what the run's ledger accounts.
    """
    if scheme not in ("poisson", "without_replacement", "fixed"):
        _require(False, "scheme", f"'poisson' or 'without_replacement' (got {scheme!r})")
    canonical = "without_replacement" if scheme == "fixed" else scheme
    gaussian = gaussian_for_sum(1.0, noise_multiplier, RELATION_OF_SCHEME[canonical])
    return _sampled_steps(gaussian, sampling_rate, steps, canonical, population)


def sensitivity_in_clip_norms(scheme: str) -> float:
    """L2 sensitivity of a clipped sum, in units of the clip norm, under ``scheme``'s relation."""
    canonical = "without_replacement" if scheme == "fixed" else scheme
    return 1.0 if RELATION_OF_SCHEME[canonical] == "add_remove" else 2.0


def effective_gaussian_multiplier(event: PrivacyEvent) -> float | None:
    """Noise multiplier of the single Gaussian equivalent to ``event``, or ``None`` if ``event``
    is not built only of Gaussians (sequential Gaussian queries on the same data compose into one:
    z_eff = (Σ count / z²)^(-1/2); Mironov, Talwar & Zhang 2019, section 3)."""
    total = 0.0
    for leaf, count in leaf_counts(event).items():
        if not isinstance(leaf, Gaussian):
            return None
        total += count / leaf.noise_multiplier**2
    return total**-0.5


__all__ = [
    "LEVELS",
    "LEVEL_DESCRIPTIONS",
    "RELATIONS",
    "RELATION_OF_SCHEME",
    "SCHEMES",
    "ClientEvent",
    "Composed",
    "DiscreteGaussian",
    "Gaussian",
    "PrivacyEvent",
    "PrivacyUnit",
    "RandomizedQuantization",
    "Sampled",
    "Skellam",
    "UnitEvent",
    "clipped_sum_gaussian",
    "compose",
    "effective_gaussian_multiplier",
    "event_from_dict",
    "gaussian_for_sum",
    "iter_events",
    "leaf_counts",
    "sampled_gaussian",
    "sensitivity_in_clip_norms",
]
