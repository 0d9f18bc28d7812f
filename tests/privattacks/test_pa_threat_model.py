"""Threat models enforced by types: a privacy attack is given an AttackerKnowledge the core
builds — never the simulation, never Truth, never a client's private data except through the
evaluation's candidate pool. On the old code attacks received the Simulation itself, from which
``env.truth()`` and ``env.data.client_arrays(i)`` were one attribute away."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from fedguard.config import parse_spec
from fedguard.core.federated_data import FederatedData
from fedguard.core.knowledge import AttackerKnowledge
from fedguard.core.simulation import Simulation
from fedguard.launch import build_simulation
from fedguard.types import Truth

SPEC = {
    "name": "threat-model",
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [8]},
    "clients": {"n_clients": 6},
    "training": {"algorithm": "fedsgd", "learning_rate": 0.5},
    "attack": {"privacy_attacks": [{"name": "loss_threshold"}]},
}


def _reachable(root: Any) -> list[Any]:
    """Every object reachable from ``root`` through public attributes, fields and containers."""
    seen: dict[int, Any] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | int | float | bool | Tensor):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, nn.Module | torch.dtype | type):
            continue  # the architecture copy is checked separately
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            names = (
                [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
            )
            names += [n for n in getattr(obj, "__dict__", {}) if not n.startswith("_")]
            stack.extend(getattr(obj, n) for n in names if not n.startswith("_"))
    return list(seen.values())


def test_attacks_receive_attacker_knowledge_not_the_simulation() -> None:
    sim = build_simulation(parse_spec(SPEC))
    received: list[Any] = []
    (attack,) = sim.components.privacy_attacks
    original = attack.observe

    def recording(view: Any, env: Any) -> Any:
        received.append(env)
        return original(view, env)

    object.__setattr__(attack, "observe", recording)
    state = sim.initial_state()
    for _ in range(2):
        state, _ = sim.run_round(state)
    assert received and all(isinstance(env, AttackerKnowledge) for env in received)


def test_nothing_private_is_reachable_from_the_knowledge() -> None:
    sim = build_simulation(parse_spec(SPEC))
    knowledge = sim.knowledge()
    found = _reachable(knowledge)
    forbidden = (Simulation, Truth, FederatedData, type(sim.data.clients))
    assert not [type(o).__name__ for o in found if isinstance(o, forbidden)]
    assert not any(callable(getattr(o, "truth", None)) for o in found)
    assert not any(callable(getattr(o, "client_arrays", None)) for o in found)
    # the architecture is an independent copy: changing it cannot touch the simulation's model
    for mine, theirs in zip(
        knowledge.model.parameters(), sim.model.module.parameters(), strict=True
    ):
        assert mine.data_ptr() != theirs.data_ptr()


def test_the_candidate_pool_mixes_members_with_held_out_records() -> None:
    """What the pool grants: the target's records plus as many held-out ones, labels withheld."""
    sim = build_simulation(parse_spec(SPEC))
    pool = sim.knowledge().candidates.membership_candidates(
        "client", 2, 2, torch.Generator().manual_seed(0)
    )
    x_client, _ = sim.data.client_arrays(2)
    n = x_client.shape[0]
    assert pool.candidates[0].shape[0] == 2 * n
    assert torch.equal(pool.candidates[0][:n], x_client)
    test_rows = {r.numpy().tobytes() for r in sim.data.test.features}
    assert all(r.numpy().tobytes() in test_rows for r in pool.candidates[0][n:])


def test_an_attack_gets_only_what_its_declared_threat_model_grants() -> None:
    """Inversion attacks declare the architecture only: the round hands them no candidate pool;
    membership attacks declare both; an undeclared grant is refused."""
    from fedguard.errors import ConfigError
    from fedguard.registry import build

    spec = {
        **SPEC,
        "attack": {
            "privacy_attacks": [{"name": "analytic", "at_round": 0}, {"name": "loss_threshold"}],
        },
    }
    sim = build_simulation(parse_spec(spec))
    given: dict[str, Any] = {}
    for attack in sim.components.privacy_attacks:
        original = attack.observe

        def recording(view: Any, env: Any, name: str = attack.registry_name, f: Any = original):
            given[name] = env
            return f(view, env)

        object.__setattr__(attack, "observe", recording)
    sim.run_round(sim.initial_state())
    assert given["analytic"].candidates is None and given["analytic"].model is not None
    assert given["loss_threshold"].candidates is not None
    assert build("privacy_attack", "analytic", {}, "x").threat_model == {"architecture"}
    with pytest.raises(ConfigError, match="threat_model"):
        sim.knowledge(frozenset({"truth"}))
