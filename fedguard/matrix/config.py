"""Matrix config: a base experiment plus axes (attacks, defenses, seeds, more) that expand to cells.

A parameter given as a list expands: ``{name: ipm, epsilon: [0.1, 10]}`` is two attacks.
The no-attack and no-defense (plain mean) baselines are always included.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedguard import registry
from fedguard.config import SEED_LIMIT, RunSpec, describe_validation_error, load_yaml, parse_spec
from fedguard.errors import ConfigError

ATTACK_KINDS = ("model_attack", "data_attack", "free_rider", "privacy_attack")
NO_ATTACK = "none"
NO_DEFENSE = "mean"


class MatrixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "matrix"
    base: str | dict[str, Any] = Field(default_factory=dict)
    rounds: int | None = Field(None, ge=1)
    n_malicious: int | list[int] = Field(
        4, description="malicious clients in every attacked cell; a list is an axis"
    )
    attacks: list[Any] = Field(default_factory=list)
    defenses: list[Any] = Field(default_factory=list)
    seeds: list[Annotated[int, Field(ge=0, lt=SEED_LIMIT)]] = Field(default_factory=lambda: [0])
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    metric: str = "test_accuracy"
    max_cells: int = Field(200, ge=1)


@dataclass(frozen=True)
class Cell:
    attack: str  # label
    defense: str  # label
    seed: int
    axes: tuple[tuple[str, Any], ...]
    spec: RunSpec

    @property
    def key(self) -> str:
        return self.spec.spec_hash()

    @property
    def axes_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.axes)


def _expand_params(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian expansion of list-valued parameters (``hidden``-style tuples stay whole)."""
    keys = [k for k, v in entry.items() if isinstance(v, list) and k != "hidden"]
    if not keys:
        return [entry]
    out = []
    for combo in itertools.product(*(entry[k] for k in keys)):
        out.append({**entry, **dict(zip(keys, combo, strict=True))})
    return out


def _label(name: str, params: dict[str, Any]) -> str:
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({inner})" if inner else name


def _kind_of(name: str) -> str:
    for kind in ATTACK_KINDS:
        if name in registry.names(kind):
            return kind
    valid = sorted({n for k in ATTACK_KINDS for n in registry.names(k)})
    raise ConfigError(f"unknown attack {name!r} in attacks; valid names: {', '.join(valid)}.")


def expand_attacks(entries: list[Any], n_malicious: int) -> list[tuple[str, dict[str, Any]]]:
    """Each entry → (label, ``attack:`` section of a RunSpec). ``none`` comes first."""
    out: list[tuple[str, dict[str, Any]]] = [(NO_ATTACK, {})]
    for entry in entries:
        if entry == NO_ATTACK:
            continue
        raw = {"name": entry} if isinstance(entry, str) else dict(entry)
        if "name" not in raw:
            raise ConfigError("each entry of attacks must be a name or a mapping with 'name'.")
        for params in _expand_params(raw):
            params = dict(params)
            name = params.pop("name")
            count = int(params.pop("n_malicious", params.pop("count", n_malicious)))
            kind = _kind_of(name)
            section: dict[str, Any]
            if kind == "free_rider":
                section = {"free_riders": {"name": name, "count": count, "params": params}}
            elif kind == "privacy_attack":
                section = {"privacy_attacks": [{"name": name, **params}]}
            else:
                section = {"n_malicious": count, kind: {"name": name, **params}}
            label = _label(name, params) + (f"[{count}]" if kind != "privacy_attack" else "")
            out.append((label, section))
    return out


def _component_variants(comp: Any) -> list[Any]:
    """A component written as a mapping with list-valued parameters → one variant per value."""
    return _expand_params(dict(comp)) if isinstance(comp, dict) else [comp]


def _section_variants(raw: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Expand list-valued parameters of every component of a defense section (aggregator,
    transport, each transform); returns (section, the varied parameters as a label suffix)."""
    slots: list[tuple[str, int | None, Any]] = []
    for key in ("aggregator", "transport"):
        if key in raw:
            slots.append((key, None, raw[key]))
    for key in ("preaggregators", "client_transforms", "server_transforms"):
        for i, comp in enumerate(raw.get(key, [])):
            slots.append((key, i, comp))
    choices = [_component_variants(comp) for _, _, comp in slots]
    out = []
    for combo in itertools.product(*choices):
        section = {k: (list(v) if isinstance(v, list) else v) for k, v in raw.items()}
        varied = []
        for (key, position, original), chosen in zip(slots, combo, strict=True):
            if position is None:
                section[key] = chosen
            else:
                section[key][position] = chosen
            if isinstance(original, dict):
                varied += [
                    f"{k}={chosen[k]}"
                    for k, v in original.items()
                    if isinstance(v, list) and k != "hidden"
                ]
        out.append((section, ",".join(varied)))
    return out


def expand_defenses(entries: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each entry → (label, ``defense:`` section). The plain mean comes first. A list-valued
    parameter of any component in the entry (``noise_multiplier: [0.5, 1.0]``) expands."""
    out: list[tuple[str, dict[str, Any]]] = [(NO_DEFENSE, {"aggregator": "mean"})]
    for entry in entries:
        raw: dict[str, Any] = {"aggregator": entry} if isinstance(entry, str) else dict(entry)
        label = raw.pop("label", None)
        # what clients send may be the model's choice (adapters): merged into ``model``
        model = raw.pop("model", None)
        raw.setdefault("aggregator", "mean")
        for section, varied in _section_variants(raw):
            if model is not None:
                section = {**section, "model": dict(model)}
            if label:
                name = f"{label}:{varied}" if varied else label
            else:
                name = _defense_label(section)
            if name == NO_DEFENSE and section == {"aggregator": "mean"}:
                continue
            out.append((name, section))
    return out


def _agg_label(agg: Any) -> str:
    if isinstance(agg, str):
        return agg
    params = {k: v for k, v in agg.items() if k != "name"}
    return _label(agg["name"], params)


def _defense_label(section: dict[str, Any]) -> str:
    parts = [_agg_label(section.get("aggregator", "mean"))]
    for key in ("client_transforms", "server_transforms"):
        for t in section.get(key, []):
            parts.append(_agg_label(t))
    transport = section.get("transport")
    if transport and transport != "plain":
        parts.append(_agg_label(transport))
    return " + ".join(parts)


def load_matrix(path: str | Path) -> tuple[MatrixConfig, dict[str, Any]]:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("the matrix config must be a YAML mapping.")
    try:
        cfg = MatrixConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model=MatrixConfig)) from None
    base = cfg.base
    if isinstance(base, str):
        base_path = (Path(path).parent / base).resolve()
        base = load_yaml(base_path)
        if not isinstance(base, dict):
            raise ConfigError(f"base config {cfg.base!r} must be a YAML mapping.")
    return cfg, dict(base)


def _merge(base: dict[str, Any], section: str, override: dict[str, Any], replace: bool) -> None:
    cur = dict(base.get(section) or {})
    if replace:
        cur = (
            {k: v for k, v in cur.items() if k in ("n_byzantine",)} if section == "defense" else {}
        )
    cur.update(override)
    base[section] = cur


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = data
    for part in path:
        child = node.get(part)
        if isinstance(child, str):
            child = {"name": child}
        node[part] = dict(child or {})
        node = node[part]
    node[last] = value


def expand_cells(cfg: MatrixConfig, base: dict[str, Any]) -> list[Cell]:
    """Every (attack, defense, seed, axes) combination as a validated RunSpec."""
    counts = cfg.n_malicious if isinstance(cfg.n_malicious, list) else [cfg.n_malicious]
    if not counts or min(counts) < 1:
        raise ConfigError("n_malicious must be a positive integer or a list of them.")
    defenses = expand_defenses(cfg.defenses)
    axis_keys = sorted(cfg.axes)
    axis_values = [cfg.axes[k] for k in axis_keys]
    cells = []
    for count, (d_label, d_sec), seed, combo in itertools.product(
        counts, defenses, cfg.seeds, itertools.product(*axis_values)
    ):
        setting = tuple(zip(axis_keys, combo, strict=True))
        if len(counts) > 1:  # the fraction of malicious clients is an axis of its own
            setting = (("n_malicious", count), *setting)
        for a_label, a_sec in expand_attacks(cfg.attacks, count):
            cells.append(_cell(cfg, base, a_label, a_sec, d_label, d_sec, seed, setting, count))
    unique: dict[str, Cell] = {}
    for cell in cells:  # identical specs (e.g. a defense listed twice) are one cell
        unique.setdefault(cell.key, cell)
    return list(unique.values())


def _cell(
    cfg: MatrixConfig,
    base: dict[str, Any],
    a_label: str,
    a_sec: dict[str, Any],
    d_label: str,
    d_sec: dict[str, Any],
    seed: int,
    setting: tuple[tuple[str, Any], ...],
    count: int,
) -> Cell:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    _merge(data, "attack", a_sec, replace=True)
    d_sec = dict(d_sec)
    model = d_sec.pop("model", None)
    if model is not None:  # a defense entry's model overrides (e.g. adapter: lora)
        current = data.get("model") or {}
        current = {"name": current} if isinstance(current, str) else dict(current)
        if "params" in current:
            current["params"] = {**current["params"], **model}
        else:
            current.update(model)
        data["model"] = current
    _merge(data, "defense", d_sec, replace=True)
    # the same tolerance f in every column, so a defense is one fixed rule across attacks
    data["defense"].setdefault("n_byzantine", count)
    data["seed"] = seed
    data["name"] = cfg.name
    if cfg.rounds:
        data["rounds"] = cfg.rounds
    for key, value in setting:
        if key != "n_malicious":
            _set_dotted(data, key, value)
    try:
        spec = parse_spec(data)
    except ConfigError as exc:
        raise ConfigError(f"cell ({a_label} × {d_label}, seed {seed}): {exc}") from None
    return Cell(a_label, d_label, seed, setting, spec)


def count_cells(cfg: MatrixConfig) -> int:
    """How many cells ``cfg`` expands to at most (identical specs later merge), computed from
    the axes alone: a 409,600-cell matrix is refused before a single cell is built."""
    counts = cfg.n_malicious if isinstance(cfg.n_malicious, list) else [cfg.n_malicious]
    if not counts or min(counts) < 1:
        raise ConfigError("n_malicious must be a positive integer or a list of them.")
    attacks = 1 + sum(
        math.prod(len(v) for k, v in _mapping(e).items() if isinstance(v, list) and k != "hidden")
        for e in cfg.attacks
        if e != NO_ATTACK
    )
    defenses = len(expand_defenses(cfg.defenses))
    axes = math.prod(len(v) for v in cfg.axes.values())
    return len(counts) * attacks * defenses * len(cfg.seeds) * axes


def _mapping(entry: Any) -> dict[str, Any]:
    return dict(entry) if isinstance(entry, dict) else {}


def check_cells_limit(cfg: MatrixConfig, confirmed: bool) -> None:
    """``max_cells`` from the axes, before expansion (which validates every cell's spec)."""
    upper = count_cells(cfg)
    if upper > cfg.max_cells and not confirmed:
        raise ConfigError(
            f"the matrix expands to {upper:,} cells, more than max_cells "
            f"({cfg.max_cells}); raise max_cells or pass --yes to run them all."
        )


def validate_cells_count(cells: list[Cell], limit: int, confirmed: bool) -> None:
    if len(cells) > limit and not confirmed:
        raise ConfigError(
            f"the matrix expands to {len(cells)} cells, more than max_cells ({limit}); "
            "raise max_cells or pass --yes to run them all."
        )
