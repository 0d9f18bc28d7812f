"""Run configuration as users write it: YAML in, a :class:`~fedguard.spec.RunSpec` out, with
every component's parameter defaults (known only to the registry) given to the spec for hashing.

The schema itself lives in the core (:mod:`fedguard.spec`); this module is the registry layer's
entry to it, and re-exports the schema's names so ``from fedguard.config import RunSpec`` keeps
working. Parameters are validated against the component's dataclass fields when the components
are built (:func:`fedguard.components.build_components`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fedguard import registry
from fedguard import spec as _spec
from fedguard.errors import ConfigError
from fedguard.spec import (
    MAX_BATCH_SIZE,
    MAX_LOCAL_EPOCHS,
    SEED_LIMIT,
    AttackConfig,
    ClientsConfig,
    ComponentDefaults,
    ComponentSpec,
    DataConfig,
    DefenseConfig,
    FreeRiderConfig,
    PrivacyConfig,
    RunSpec,
    ServerConfig,
    TrainingConfig,
    canonical_json,
    describe_validation_error,
    load_yaml,
)

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_LOCAL_EPOCHS",
    "SEED_LIMIT",
    "AttackConfig",
    "ClientsConfig",
    "ComponentDefaults",
    "ComponentSpec",
    "DataConfig",
    "DefenseConfig",
    "FreeRiderConfig",
    "PrivacyConfig",
    "RunSpec",
    "ServerConfig",
    "TrainingConfig",
    "canonical_json",
    "describe_validation_error",
    "fill_defaults",
    "load_spec",
    "load_yaml",
    "parse_spec",
]


def parse_spec(data: Any) -> RunSpec:
    """Validate user input into a :class:`RunSpec` that hashes with the registry's defaults."""
    return _spec.parse_spec(data, fill_defaults)


def load_spec(path: str | Path, **overrides: Any) -> RunSpec:
    spec = parse_spec(load_yaml(path))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return spec.with_overrides(**overrides) if overrides else spec


def fill_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Fill every component's parameter defaults into a dumped RunSpec (for canonical hashing)."""
    slots = [
        ("dataset", ("data", "dataset")),
        ("partitioner", ("data", "partition")),
        ("model", ("model",)),
        ("aggregator", ("defense", "aggregator")),
        ("transport", ("defense", "transport")),
        ("model_attack", ("attack", "model_attack")),
        ("data_attack", ("attack", "data_attack")),
    ]
    slots.append(("payload", ("defense", "payload")))
    lists = [
        ("preaggregator", ("defense", "preaggregators")),
        ("client_transform", ("defense", "client_transforms")),
        ("server_transform", ("defense", "server_transforms")),
        ("privacy_attack", ("attack", "privacy_attacks")),
        ("client_check", ("defense", "client_checks")),
    ]

    def node(path: tuple[str, ...]) -> Any:
        cur: Any = data
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return cur

    def fill(kind: str, comp: dict[str, Any] | None) -> None:
        if not comp:
            return
        try:
            defaults = registry.parameters(kind, comp["name"])
        except (ConfigError, ImportError, AttributeError):
            return
        for key, value in defaults.items():
            if value is not dataclasses.MISSING and key not in comp["params"]:
                comp["params"][key] = value if not isinstance(value, tuple) else list(value)

    for kind, path in slots:
        fill(kind, node(path))
    for kind, path in lists:
        for comp in node(path) or []:
            fill(kind, comp)
    return data
