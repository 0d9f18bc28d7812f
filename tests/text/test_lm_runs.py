"""Whole runs of the language-model track: adapters go through client DP, secure aggregation and
DP-SGD unchanged; the base weights never move."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedguard.config import parse_spec
from fedguard.core.runner import execute


def _spec(**overrides: Any):
    config: dict[str, Any] = {
        "name": "lm_tiny",
        "rounds": 2,
        "data": {
            "dataset": {"name": "text", "window": 32, "n_authors": 4, "chars_per_author": 600},
            "partition": "natural",
            "test_fraction": 0.1,
        },
        "model": {
            "name": "gpt",
            "n_layer": 1,
            "n_head": 2,
            "d_model": 16,
            "context": 32,
            "adapter": "lora",
            "lora_rank": 2,
        },
        "clients": {"n_clients": 4},
        "training": {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.1},
    }
    config.update(overrides)
    return parse_spec(config)


def _buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in module.named_buffers()}


@pytest.mark.parametrize(
    "defense",
    [
        {  # client-level DP-FedAvg on adapters, under secure aggregation
            "aggregator": "mean",
            "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
            "server_transforms": [
                {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
            ],
            "transport": "secagg",
        },
        {  # record-level DP-SGD on adapters
            "aggregator": "mean",
            "client_transforms": [{"name": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0}],
        },
    ],
    ids=["dp_fedavg+secagg", "dp_sgd"],
)
def test_adapters_go_through_dp_and_transport_unchanged(defense: dict[str, Any]) -> None:
    spec = _spec(defense=defense, clients={"n_clients": 4, "weighting": "uniform"})
    result = execute(spec)
    sim = result.simulation
    assert all(".lora_" in n for n in sim.model.layout.names)
    assert sim.model.layout.dim == 2 * 2 * (16 * 2)  # query and value: A (2×16), B (16×2)
    events = [e for r in result.ledger["rounds"] for e in r.get("population", [])]
    events += [e for r in result.ledger["rounds"] for c in r.get("clients", {}).values() for e in c]
    assert events, "the DP mechanism's events reach the ledger"
    assert all(torch.isfinite(torch.tensor(r["test_loss"])) for r in result.records)


@pytest.mark.xfail(
    strict=True,
    reason="the round must call ModelSpec.initialize (wired after the Round stages merge)",
)
def test_base_weights_never_move() -> None:
    spec = _spec()
    result = execute(spec)
    sim = result.simulation
    before = _buffers(sim.model.module)
    from fedguard.core.simulation import Simulation

    fresh = Simulation(spec)
    for name, value in _buffers(fresh.model.module).items():
        assert torch.equal(before[name], value), name
