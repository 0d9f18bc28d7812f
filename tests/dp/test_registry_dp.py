"""Every DP entry point loads, is a frozen dataclass, and its file is named after it."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from fedguard import registry

ROOT = Path(__file__).resolve().parents[2]
KIND_OF_GROUP = {f"fedguard.{kind}s": kind for kind in registry.KINDS}


def _dp_entries() -> list[tuple[str, str, str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [
        (KIND_OF_GROUP[group], name, target)
        for group, eps in data["project"]["entry-points"].items()
        for name, target in eps.items()
        if target.startswith("fedguard.defenses.dp.")
    ]


@pytest.mark.parametrize(("kind", "name", "target"), _dp_entries())
def test_dp_component_is_registered(kind: str, name: str, target: str) -> None:
    cls = registry.get(kind, name)
    assert f"{cls.__module__}:{cls.__name__}" == target
    assert cls.__module__.rsplit(".", 1)[1] == name  # one component per file, named after it
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert "References" in (cls.__doc__ or "")
    cls()  # defaults are valid


def test_all_dp_names_are_present() -> None:
    names = {name for _, name, _ in _dp_entries()}
    assert names == {
        "dp_sgd", "clip", "distributed_gaussian", "adaptive_clipping", "rqm",
        "central_gaussian", "dp_brem", "dp_brem_cc", "secagg_discrete_gaussian", "secagg_skellam",
    }  # fmt: skip
