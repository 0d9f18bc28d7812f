"""The run's specification: the YAML schema (pydantic, unknown keys forbidden) and the frozen
:class:`RunSpec` that names a run by its canonical hash.

This module is core: it knows no plugin. A spec's canonical form lists every component's
parameters with their defaults filled in, and only the registry knows those defaults, so the
layer that parses user input (:func:`fedguard.config.parse_spec`) hands the spec a
``ComponentDefaults`` function; the core asks the spec for its canonical form and hash and never
reaches up to the registry. A spec read back from a run folder is already canonical
(:meth:`RunSpec.from_canonical`). A component is written either as a bare name
(``aggregator: krum``) or as a mapping with ``name`` and its parameters (``aggregator: {name:
krum, n_byzantine: 4}``); ``nnm+trimmed_mean`` composes pre-aggregators with an aggregator.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fedguard.errors import ConfigError

#: Fills every component's parameter defaults into a dumped spec (``model_dump(mode="json")``),
#: in place, and returns it: what the registry layer gives a spec so that it can be hashed.
ComponentDefaults = Callable[[dict[str, Any]], dict[str, Any]]

#: Seeds feed numpy/sklearn generators, which take [0, 2³²).
SEED_LIMIT = 2**32
#: Sizes beyond these cannot run on any machine (a batch of 2²⁰ padded samples per client
#: already needs gigabytes); refusing them at validation beats an allocation failure mid-run.
MAX_BATCH_SIZE = 2**20
MAX_LOCAL_EPOCHS = 10_000


class _Strict(BaseModel):
    # inf/NaN never make a working config (lr: .inf diverges in the first step)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ComponentSpec(_Strict):
    """A registered component by name, with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value, "params": {}}
        if isinstance(value, dict) and "params" not in value:
            value = dict(value)
            name = value.pop("name", None)
            return {"name": name, "params": value}
        return value

    def __hash__(self) -> int:
        return hash(canonical_json(self.model_dump(mode="json")))


class DataConfig(_Strict):
    dataset: ComponentSpec = ComponentSpec(name="digits")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    partition: ComponentSpec = ComponentSpec(name="iid")
    duplicate_clients: dict[int, int] = Field(
        default_factory=dict,
        description="client → source client whose data it receives (an exact duplicate)",
    )


class ClientsConfig(_Strict):
    n_clients: int = Field(20, ge=1)
    sampling: Literal["all", "fixed", "poisson", "min_separation"] = "all"
    cohort_size: int | None = Field(None, ge=1)
    sampling_rate: float | None = Field(None, gt=0, le=1)
    weighting: Literal["samples", "uniform"] = "samples"
    #: b of ``sampling: min_separation``: a client takes part at most once every b rounds (the
    #: clients are split into b fixed groups, group t mod b is eligible in round t; with
    #: ``sampling_rate`` q each eligible client takes part with probability q)
    min_separation: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _sampling_params(self) -> ClientsConfig:
        if self.sampling == "fixed" and self.cohort_size is None:
            raise ValueError("clients.cohort_size is required when clients.sampling is 'fixed'")
        if self.sampling == "fixed" and self.cohort_size and self.cohort_size > self.n_clients:
            raise ValueError("clients.cohort_size must not exceed clients.n_clients")
        if self.sampling == "poisson" and self.sampling_rate is None:
            raise ValueError("clients.sampling_rate is required when clients.sampling is 'poisson'")
        if self.sampling == "min_separation":
            if self.min_separation is None:
                raise ValueError(
                    "clients.min_separation is required when clients.sampling is 'min_separation'"
                )
            if self.min_separation > self.n_clients:
                raise ValueError("clients.min_separation must not exceed clients.n_clients")
        elif self.min_separation is not None:
            raise ValueError(
                "clients.min_separation is only allowed with sampling 'min_separation'"
            )
        return self


class TrainingConfig(_Strict):
    algorithm: Literal["fedavg", "fedsgd"] = "fedavg"
    local_epochs: int = Field(1, ge=1, le=MAX_LOCAL_EPOCHS)
    batch_size: int = Field(16, ge=1, le=MAX_BATCH_SIZE)
    learning_rate: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    prox_mu: float = Field(0.0, ge=0)
    trainer: Literal["vectorized", "sequential"] = "vectorized"
    #: memory the vectorized trainer may use per round: "auto" (half the free memory), bytes, or
    #: a size like "4GB"; clients are trained in chunks that fit (exact: results do not change)
    max_memory: str | int = "auto"


class ServerConfig(_Strict):
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    learning_rate: float = Field(1.0, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    tau: float = Field(1e-3, gt=0)


class DefenseConfig(_Strict):
    aggregator: ComponentSpec = ComponentSpec(name="mean")
    preaggregators: tuple[ComponentSpec, ...] = ()
    client_transforms: tuple[ComponentSpec, ...] = ()
    server_transforms: tuple[ComponentSpec, ...] = ()
    transport: ComponentSpec = ComponentSpec(name="plain")
    #: client-side inspections of the received model (a client that alarms refuses the round)
    client_checks: tuple[ComponentSpec, ...] = ()
    #: what clients train from and send back (FedRand, partial sharing); None = the whole update
    payload: ComponentSpec | None = None
    n_byzantine: int | None = Field(
        None, ge=0, description="tolerance f told to robust rules; defaults to attack.n_malicious"
    )

    @model_validator(mode="before")
    @classmethod
    def _split_composition(cls, value: Any) -> Any:
        """``aggregator: nnm+trimmed_mean`` → pre-aggregator ``nnm`` then ``trimmed_mean``."""
        if not isinstance(value, dict):
            return value
        agg = value.get("aggregator")
        name = (
            agg
            if isinstance(agg, str)
            else (agg or {}).get("name")
            if isinstance(agg, dict)
            else None
        )
        if isinstance(name, str) and "+" in name:
            *pre, last = [p.strip() for p in name.split("+")]
            value = dict(value)
            params = {k: v for k, v in agg.items() if k != "name"} if isinstance(agg, dict) else {}
            value["aggregator"] = {"name": last, **params}
            value["preaggregators"] = [*pre, *value.get("preaggregators", [])]
        return value


class FreeRiderConfig(_Strict):
    name: str
    count: int = Field(1, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)


class AttackConfig(_Strict):
    n_malicious: int = Field(0, ge=0)
    model_attack: ComponentSpec | None = None
    data_attack: ComponentSpec | None = None
    free_riders: FreeRiderConfig | None = None
    privacy_attacks: tuple[ComponentSpec, ...] = ()
    #: the malicious clients and free-riders act in rounds [start_round, stop_round) (0-based);
    #: outside that window they train honestly on clean data (durability after attackers leave)
    start_round: int = Field(0, ge=0)
    stop_round: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _window(self) -> AttackConfig:
        if self.stop_round is not None and self.stop_round <= self.start_round:
            raise ValueError(
                f"attack.stop_round must be greater than attack.start_round "
                f"({self.start_round}); got {self.stop_round}."
            )
        return self


class PrivacyConfig(_Strict):
    delta: float = Field(1e-5, gt=0, lt=1)
    target_epsilon: float | None = Field(None, gt=0)
    stop_at_epsilon: float | None = Field(None, gt=0)
    secure_rng: bool = False


class RunSpec(_Strict):
    """Frozen description of one run; its canonical hash names the run."""

    name: str = "run"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    #: Seed of the training randomness only (model init, client sampling, batches, component
    #: noise); ``None`` = ``seed``. Data split, partition and client roles follow ``seed``, so runs
    #: that differ only here train the same clients on the same data (``contrib --training-seeds``).
    training_seed: int | None = Field(None, ge=0, lt=SEED_LIMIT)
    rounds: int = Field(20, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    eval_every: int = Field(1, ge=1)
    save_updates: bool = False
    data: DataConfig = DataConfig()
    model: ComponentSpec = ComponentSpec(name="mlp")
    clients: ClientsConfig = ClientsConfig()
    training: TrainingConfig = TrainingConfig()
    server: ServerConfig = ServerConfig()
    defense: DefenseConfig = DefenseConfig()
    attack: AttackConfig = AttackConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    #: how :meth:`canonical` fills component defaults (set by :func:`parse_spec`'s caller)
    _defaults: ComponentDefaults | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\\0"):
            raise ValueError("name must be a non-empty string without slashes")
        if not v.isprintable():
            # escape codes in a name would be interpreted by the terminal of whoever runs `show`
            raise ValueError(
                f"name must consist of printable characters (no control or escape codes); got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _duplicates_exist(self) -> RunSpec:
        n = self.clients.n_clients
        for target, source in self.data.duplicate_clients.items():
            if not (0 <= target < n and 0 <= source < n) or target == source:
                raise ValueError(
                    "data.duplicate_clients must map distinct client ids in "
                    f"[0, {n - 1}] (target: source); got {target}: {source}"
                )
        return self

    @model_validator(mode="after")
    def _attackers_fit(self) -> RunSpec:
        frees = self.attack.free_riders.count if self.attack.free_riders else 0
        if self.attack.n_malicious + frees >= self.clients.n_clients:
            raise ValueError(
                "attack.n_malicious plus free-riders must be fewer than clients.n_clients"
            )
        return self

    @property
    def n_byzantine(self) -> int:
        if self.defense.n_byzantine is not None:
            return self.defense.n_byzantine
        frees = self.attack.free_riders.count if self.attack.free_riders else 0
        return self.attack.n_malicious + frees

    def with_overrides(self, **dotted: Any) -> RunSpec:
        """A copy with ``{"training.learning_rate": 0.1, ...}`` applied (validated again)."""
        data = self.model_dump(mode="json")
        for key, value in dotted.items():
            node = data
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        return parse_spec(data, self._defaults)

    @classmethod
    def from_canonical(cls, data: Any) -> RunSpec:
        """A spec from its canonical form (a run folder's ``spec.yaml``): its defaults are
        already filled in, so it hashes as the spec that wrote it."""
        return parse_spec(data, _already_filled)

    def canonical(self) -> dict[str, Any]:
        """JSON-safe dict with every component's defaults filled in (the hashed form)."""
        if self._defaults is None:
            raise RuntimeError(
                "this RunSpec has no component defaults to hash with: build it with "
                "fedguard.config.parse_spec (or RunSpec.from_canonical for a written spec)"
            )
        data = self._defaults(self.model_dump(mode="json"))
        if data.get("training_seed") is None:
            data.pop("training_seed", None)  # unset: the hash of every earlier spec is unchanged
        defense, attack = data.get("defense", {}), data.get("attack", {})
        # the round's newer hooks, at their defaults: earlier specs keep their hash
        for node, key, default in (
            (defense, "client_checks", []),
            (defense, "payload", None),
            (attack, "start_round", 0),
            (attack, "stop_round", None),
        ):
            if key in node and node[key] == default:
                node.pop(key)
        if data.get("clients", {}).get("min_separation", 0) is None:
            data["clients"].pop("min_separation")  # likewise for the min-separation schedule
        # chunking is exact, so the memory budget never changes a result: not part of the hash
        data.get("training", {}).pop("max_memory", None)
        return data

    def spec_hash(self) -> str:
        from fedguard import __version__

        payload = canonical_json({"spec": self.canonical(), "version": __version__})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _section_keys(model: type[BaseModel], path: Sequence[Any]) -> list[str] | None:
    """The keys the config section at ``path`` (field names from ``model`` down) accepts, or
    None where the path leaves the typed models (a list index, a component's params)."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = [field.annotation, *typing.get_args(field.annotation)]
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return sorted(model.model_fields)


def describe_validation_error(
    exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One sentence naming the first offending field and what is allowed (for an unknown key:
    the keys its section takes, when ``model``, the validated class, is given)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
    if err["type"] == "extra_forbidden":
        parts = [p for p in err["loc"] if not str(p).startswith("function-")]
        keys = _section_keys(model, parts[:-1]) if model is not None else None
        if not keys:
            return f"unknown key {loc!r} in the config; check its spelling against the reference."
        section = ".".join(map(str, parts[:-1])) or "the top level"
        close = difflib.get_close_matches(str(parts[-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {loc!r} in the config{hint}; {section} takes: {', '.join(keys)}."
    if err["type"] == "missing":
        return f"{loc} is required."
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return msg[0].upper() + msg[1:] + "." if not msg.endswith(".") else msg
    return f"{loc}: {msg} (got {err.get('input')!r})."


def _already_filled(data: dict[str, Any]) -> dict[str, Any]:
    return data


def parse_spec(data: Any, defaults: ComponentDefaults | None) -> RunSpec:
    """Validate ``data`` into a :class:`RunSpec` that fills component defaults with
    ``defaults`` when it is hashed (``None``: a spec that cannot be hashed)."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping of keys to values.")
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model=RunSpec)) from None
    spec._defaults = defaults
    return spec


def load_yaml(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
