"""Plugin registry: components are found by (kind, name) through package entry points.

Every component, the core's plain defaults included, is declared in ``pyproject.toml`` under
``[project.entry-points."fedguard.<kind>s"]``; a third-party package plugs in the same way.
Entry points are read lazily, so importing fedguard never imports a plugin package.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from fedguard.errors import ConfigError

KINDS = (
    "aggregator",
    "preaggregator",
    "client_transform",
    "server_transform",
    "transport",
    "model_attack",
    "data_attack",
    "free_rider",
    "privacy_attack",
    "valuation",
    "dataset",
    "partitioner",
    "model",
)


def _group(kind: str) -> str:
    return f"fedguard.{kind}s"


@cache
def _entry_points(kind: str) -> dict[str, EntryPoint]:
    if kind not in KINDS:
        raise ConfigError(f"component kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    return {ep.name: ep for ep in entry_points(group=_group(kind))}


def names(kind: str) -> list[str]:
    """Sorted registered names of one kind."""
    return sorted(_entry_points(kind))


def get(kind: str, name: str) -> Any:
    """The component class (or factory) registered as ``name`` under ``kind``."""
    eps = _entry_points(kind)
    if name not in eps:
        valid = ", ".join(sorted(eps)) or "(none registered)"
        raise ConfigError(f"unknown {kind.replace('_', ' ')} {name!r}; valid names: {valid}.")
    try:
        obj = eps[name].load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{kind.replace('_', ' ')} {name!r} is registered but cannot be loaded ({exc}); "
            "reinstall fedguard or the plugin that provides it."
        ) from None
    if isinstance(obj, type):
        obj.registry_name = name  # type: ignore[attr-defined]
    return obj


def create(kind: str, name: str, **params: Any) -> Any:
    """Instantiate a component, checking parameter names against its dataclass fields."""
    cls = get(kind, name)
    if dataclasses.is_dataclass(cls):
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(params) - allowed)
        if unknown:
            allowed_txt = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"unknown parameter {unknown[0]!r} for {kind.replace('_', ' ')} {name!r}; "
                f"allowed: {allowed_txt}."
            )
    try:
        return cls(**params)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid parameters for {kind.replace('_', ' ')} {name!r}: {exc}"
        ) from exc


def parameters(kind: str, name: str) -> dict[str, Any]:
    """Parameter names and defaults of a component (``dataclasses.MISSING`` when required)."""
    cls = get(kind, name)
    if not dataclasses.is_dataclass(cls):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def all_components() -> dict[str, list[str]]:
    return {kind: names(kind) for kind in KINDS}
