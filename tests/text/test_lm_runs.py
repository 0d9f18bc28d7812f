"""Whole runs of the language-model track: adapters go through client DP, secure aggregation and
DP-SGD unchanged; the base weights never move."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedguard.config import parse_spec
from fedguard.launch import execute


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


def test_base_weights_never_move() -> None:
    spec = _spec()
    result = execute(spec)
    sim = result.simulation
    before = _buffers(sim.model.module)
    from fedguard.launch import build_simulation

    fresh = build_simulation(spec)
    for name, value in _buffers(fresh.model.module).items():
        assert torch.equal(before[name], value), name


def test_fedrand_never_hands_the_transport_a_private_part_in_a_real_run() -> None:
    """Checked on the transport's input, every round: for every client and adapted layer exactly
    one of A and B is sent, the one its keyed draw says it took from the server."""
    from dataclasses import replace

    from fedguard.api import TransformContext
    from fedguard.components import build_components
    from fedguard.defenses.lora.fedrand import pair_masks
    from fedguard.launch import build_simulation
    from fedguard.types import RoundContext
    from tests.core.test_round_stages import SpyTransport

    spec = _spec(rounds=4, defense={"payload": {"name": "fedrand"}})
    spy = SpyTransport(seen=[])
    sim = build_simulation(spec, replace(build_components(spec), transport=spy))
    layout = sim.model.layout
    a_mask, b_mask = pair_masks(layout.names, layout.sizes)
    policy = sim.components.payload
    state = sim.initial_state()
    returning = 0
    for t in range(4):
        before = set(state.payload_state.get("local", {}))
        state, out = sim.run_round(state)
        updates, ids, _ = spy.seen[-1]
        assert len(spy.seen) == t + 1
        ctx = TransformContext(RoundContext(t, sim.training_seed, state.params, ids, 4), ids)
        takes_a = policy.takes_a(ctx, a_mask.shape[0])  # (n, pairs)
        sent = takes_a.float() @ a_mask.float() + (~takes_a).float() @ b_mask.float() > 0
        assert torch.count_nonzero(updates[~sent]) == 0  # nothing private reaches the transport
        assert out.view is not None and torch.equal(out.view.sent_mask, sent)
        assert torch.count_nonzero(updates[sent]) > 0  # the shared parts did train
        returning += len(before & set(ids))
    assert returning > 0  # some rounds had clients training from their kept private parts
