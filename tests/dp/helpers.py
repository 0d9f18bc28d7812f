"""Small run specs and contexts shared by the DP tests."""

from __future__ import annotations

from typing import Any

import torch

from fedguard.api import TransformContext
from fedguard.config import parse_spec
from fedguard.core.sampling import sampling_description
from fedguard.types import RoundContext


def small_spec(**overrides: Any) -> Any:
    cfg: dict[str, Any] = {
        "name": "dp",
        "rounds": 2,
        "seed": 3,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [8]},
        "clients": {"n_clients": 10, "weighting": "uniform"},
        "training": {"batch_size": 32, "learning_rate": 0.1},
    }
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_spec(cfg)


def transform_context(
    n: int,
    d: int,
    scheme: str = "poisson",
    population: int = 100,
    rate: float = 0.1,
    round_index: int = 0,
    seed: int = 0,
    state: dict | None = None,
) -> TransformContext:
    cohort = int(rate * population)
    sampling = sampling_description(scheme, population, cohort, rate)
    ids = tuple(range(n))
    rctx = RoundContext(round_index, seed, torch.zeros(d), ids, population)
    return TransformContext(rctx, ids, state or {}, sampling)
