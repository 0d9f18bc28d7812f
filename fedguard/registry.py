"""Plugin registry: components are found by (kind, name) through package entry points.

Every component, the core's plain defaults included, is declared in ``pyproject.toml`` under
``[project.entry-points."fedguard.<kind>s"]``; a third-party package plugs in the same way.
Entry points are read lazily, so importing fedguard never imports a plugin package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, get_type_hints

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
    "client_check",
    "payload",
    "valuation",
    "dataset",
    "partitioner",
    "model",
)


def _group(kind: str) -> str:
    return f"fedguard.{kind}s"


@cache
def _installed_entry_points() -> Any:
    """Every installed entry point, from one scan of the installed distributions (a scan per
    kind cost a few tens of milliseconds each at start-up)."""
    return entry_points()


@cache
def _entry_points(kind: str) -> dict[str, EntryPoint]:
    if kind not in KINDS:
        raise ConfigError(f"component kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    return {ep.name: ep for ep in _installed_entry_points().select(group=_group(kind))}


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
    """Instantiate a component through the one builder (:func:`build`)."""
    return build(kind, name, params)


def build(
    kind: str,
    name: str,
    params: Mapping[str, Any],
    where: str | None = None,
    **inherited: Any,
) -> Any:
    """The one component builder, used by configs, the CLI, compositions and valuation.

    Checks parameter names against the component's dataclass fields, fills ``inherited`` values
    (e.g. the defense's ``n_byzantine``) into matching fields the user left unset, coerces and
    validates each value against its annotated type (lists → tuples, "3" → 3), and lets the
    class check its own bounds. ``where`` names the config field in error messages.
    """
    cls: Any = get(kind, name)
    given = dict(params)
    label = f"{kind.replace('_', ' ')} {name!r}"
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return cls(**given)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(given) - fields)
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        if where is None:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for {label}; allowed: {allowed}.")
        raise ConfigError(
            f"unknown parameter {where}.{unknown[0]} for {name!r}; allowed: {allowed}."
        )
    given.update({k: v for k, v in inherited.items() if k in fields and k not in given})
    prefix = where if where is not None else label
    given = {k: _validate_field(cls, k, v, prefix) for k, v in given.items()}
    try:
        return cls(**given)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        if where is None:
            raise ConfigError(f"invalid parameters for {label}: {exc}") from exc
        raise ConfigError(f"{where} ({name!r}): {exc}") from None


def build_composite(name: str, params: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """Build ``"nnm+trimmed_mean"``-style names with the one builder.

    ``params`` maps each component's registry name to its parameters, e.g.
    ``{"nnm": {}, "trimmed_mean": {"n_byzantine": 2}}``.
    """
    from fedguard.core.compose import compose, split_name

    pre_names, agg_name = split_name(name)
    given = dict(params or {})
    pres = [build("preaggregator", p, dict(given.get(p, {}))) for p in pre_names]
    agg = build("aggregator", agg_name, dict(given.get(agg_name, {})))
    return compose(pres, agg)


@cache
def _field_adapter(cls: type, name: str) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    try:
        hint = get_type_hints(cls)[name]
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True, strict=False))
    except Exception:  # an annotation pydantic cannot express is checked by the class itself
        return None


def _validate_field(cls: type, name: str, value: Any, where: str) -> Any:
    """Coerce/validate one parameter against its annotated type (lists → tuples, "3" → 3)."""
    from pydantic import ValidationError

    adapter = _field_adapter(cls, name)
    if adapter is None:
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise ConfigError(f"{where}.{name}: {msg} (got {value!r}).") from None


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
