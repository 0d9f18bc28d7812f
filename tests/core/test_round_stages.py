"""The round as named stages: broadcast, client checks, payload, attack windows, typed outcomes."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from fedguard.api import (
    BroadcastContext,
    ClientCheck,
    ClientCheckOutput,
    Payload,
    PayloadPolicy,
    PrivacyAttack,
    ServerBroadcast,
    TransformContext,
    TransportOutput,
)
from fedguard.components import build_components
from fedguard.config import parse_spec
from fedguard.core.local_training import train_sequential, train_vectorized
from fedguard.core.round_stages import STAGES
from fedguard.core.simulation import Simulation
from fedguard.core.transport import PlainTransport
from fedguard.launch import build_simulation
from fedguard.types import BroadcastPlan, RoundContext, ServerView, Truth

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "stages",
    "rounds": 2,
    "data": {"dataset": "digits"},
    "model": {"name": "mlp", "hidden": [8]},
    "clients": {"n_clients": 6},
    "training": {"algorithm": "fedsgd", "learning_rate": 0.1},
}
TARGET = 3


def _sim(spec: dict[str, Any] | None = None, **parts: Any) -> Simulation:
    run = parse_spec(spec or SPEC)
    return build_simulation(run, replace(build_components(run), **parts))


@dataclass(frozen=True)
class Inconsistent(ServerBroadcast, PrivacyAttack):
    """Sends every client the global model except TARGET, which gets a shifted one; observes
    what it sent."""

    shift: float = 0.5

    def broadcast(self, global_params: Tensor, ctx: BroadcastContext) -> BroadcastPlan:
        assert ctx.layout.dim == global_params.numel()
        return BroadcastPlan(global_params, {TARGET: global_params + self.shift}, {"targets": 1})

    def observe(self, view: ServerView, env: Any) -> Any:
        return view.broadcast

    def metrics(self, output: Any, truth: Truth) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class SpyTransport(PlainTransport):
    """Plain transport that records its input (and asks for the model digests)."""

    model_commitment: ClassVar[bool] = True
    seen: list[tuple[Tensor, tuple[int, ...], tuple[bytes, ...] | None]] = None  # type: ignore

    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        self.seen.append((updates.clone(), ctx.sampled_ids, ctx.model_digests))
        return super().__call__(updates, weights, ctx)


def test_stage_names_and_order_match_the_readme_diagram() -> None:
    """The README's "How a round works" names the stages exactly as the code runs them."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How a round works", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`(\w+)`", section.split("```", 2)[1] if "```" in section else section)
    code = [name for name, _, _ in STAGES]
    assert [n for n in names if n in code] == code


def test_per_client_starts_train_each_client_from_its_own_model() -> None:
    """The trainers accept an ``(n, d)`` stack of starting points; each row equals training that
    client alone from its row (vectorized and sequential)."""
    sim = _sim({**SPEC, "training": {"algorithm": "fedavg", "batch_size": 8, "momentum": 0.5}})
    p = sim.initial_state().params
    ids = [0, 2, 5]
    starts = torch.stack([p, p + 0.1, p - 0.2])
    for trainer in (train_vectorized, train_sequential):
        together = trainer(sim.model, starts, sim.clients, ids, sim.local, 0, 0)
        for row, cid in enumerate(ids):
            alone = trainer(sim.model, starts[row], sim.clients, [cid], sim.local, 0, 0)
            torch.testing.assert_close(together[row], alone[0], rtol=1e-5, atol=1e-6)


def test_broadcast_per_client_model_reaches_the_target_and_its_digest() -> None:
    spy = SpyTransport(seen=[])
    sim = _sim(privacy_attacks=(Inconsistent(),), transport=spy)
    honest = _sim()
    state = sim.initial_state()
    _, out = sim.run_round(state)
    _, honest_out = honest.run_round(honest.initial_state())
    updates, ids, digests = spy.seen[0]
    assert digests is not None and len(digests) == len(ids)
    target = ids.index(TARGET)
    assert len({d for k, d in enumerate(digests) if k != target}) == 1
    assert digests[target] != digests[(target + 1) % len(ids)]
    # the target trained from what it received, the others from the global model
    expected = train_vectorized(
        sim.model, state.params + 0.5, sim.clients, [TARGET], sim.local, sim.training_seed, 0
    )[0]
    torch.testing.assert_close(updates[target], expected)
    assert out.view is not None and out.view.broadcast is not None
    assert out.record["broadcast_targets"] == 1
    assert honest_out.view is not None
    others = [k for k in range(len(ids)) if k != target]
    torch.testing.assert_close(updates[others], honest_out.view.updates[others])  # type: ignore[index]


@dataclass(frozen=True)
class RefuseTarget(ClientCheck):
    def check(self, received: Tensor, layout: Any, ctx: TransformContext) -> ClientCheckOutput:
        seen = int(ctx.state.get("rounds", 0)) + 1
        alarms = torch.tensor([i == TARGET for i in ctx.client_ids])
        return ClientCheckOutput(alarms, received.norm(dim=1), {"rounds": seen})


def test_a_client_that_raises_an_alarm_drops_out_and_check_state_carries_over() -> None:
    spy = SpyTransport(seen=[])
    sim = _sim(client_checks=(RefuseTarget(),), transport=spy)
    state = sim.initial_state()
    state, out = sim.run_round(state)
    assert out.record["broadcast_alarms"] == [TARGET]
    assert TARGET not in spy.seen[0][1] and len(spy.seen[0][1]) == 5
    assert state.client_check_states == [{"rounds": 1}]
    state, _ = sim.run_round(state)
    assert state.client_check_states == [{"rounds": 2}]


@dataclass(frozen=True)
class HalfAndHalf(PayloadPolicy):
    """Even clients send the first half of the coordinates, odd ones the second half; each keeps
    a private copy of the other half across rounds (a FedRand-like policy)."""

    def receive(self, received: Tensor, ctx: TransformContext) -> Tensor:
        starts = received.clone()
        for k, cid in enumerate(ctx.client_ids):
            own = ctx.state.get(str(cid))
            if own is not None:
                starts[k][~self._mask(cid, received.shape[1])] = own
        return starts

    def send(self, deltas: Tensor, starts: Tensor, ctx: TransformContext) -> Payload:
        mask = torch.stack([self._mask(c, deltas.shape[1]) for c in ctx.client_ids])
        kept = dict(ctx.state)
        for k, cid in enumerate(ctx.client_ids):
            kept[str(cid)] = (starts[k] + deltas[k])[~mask[k]].clone()
        return Payload(deltas * mask, mask, kept)

    @staticmethod
    def _mask(cid: int, d: int) -> Tensor:
        m = torch.zeros(d, dtype=torch.bool)
        half = d // 2
        if cid % 2 == 0:
            m[:half] = True
        else:
            m[half:] = True
        return m


def test_payload_keeps_private_coordinates_off_the_transport_every_round() -> None:
    spy = SpyTransport(seen=[])
    sim = _sim({**SPEC, "rounds": 3}, payload=HalfAndHalf(), transport=spy)
    state = sim.initial_state()
    for _ in range(3):
        before = state.params
        state, out = sim.run_round(state)
        updates, ids, _ = spy.seen[-1]
        d = updates.shape[1]
        for row, cid in enumerate(ids):
            private = ~HalfAndHalf._mask(cid, d)
            assert torch.count_nonzero(updates[row][private]) == 0
        # each coordinate is the weighted mean over the clients that sent it
        assert out.view is not None and out.view.sent_mask is not None
        w = torch.tensor(out.view.num_samples, dtype=torch.float32)
        expected = (w @ updates) / (w[:, None] * out.view.sent_mask).sum(0)
        torch.testing.assert_close(state.params - before, expected)
        d_bytes = updates.shape[1] * updates.element_size()
        assert out.record["transport_bytes_per_client"] == pytest.approx(d_bytes / 2, rel=0.01)
    assert set(state.payload_state) == {str(i) for i in range(6)}


def test_attack_window_limits_malicious_clients_to_their_rounds() -> None:
    attacked = {
        **SPEC,
        "rounds": 3,
        "attack": {
            "n_malicious": 2,
            "model_attack": {"name": "sign_flip"},
            "data_attack": {"name": "label_flip"},
            "start_round": 1,
            "stop_round": 2,
        },
    }
    sim, clean = _sim(attacked), _sim()
    s, c = sim.initial_state(), clean.initial_state()
    records = []
    for _ in range(3):
        s, out = sim.run_round(s)
        records.append(out.record)
    c, _ = clean.run_round(c)
    assert [bool(r["malicious"]) for r in records] == [False, True, False]
    # before the window the malicious clients trained honestly on their clean data
    first, _ = sim.run_round(sim.initial_state())
    torch.testing.assert_close(first.params, c.params)


def test_config_rejects_a_window_that_ends_before_it_starts() -> None:
    from fedguard.errors import ConfigError

    with pytest.raises(ConfigError, match="stop_round"):
        parse_spec({**SPEC, "attack": {"start_round": 3, "stop_round": 2}})


def test_a_cohort_below_the_rules_bound_is_an_outcome_not_an_error() -> None:
    """Alarms shrink a fixed cohort below Krum's n > 2f + 2: the round skips aggregation (zero
    aggregate, recorded) instead of raising — the old code raised for non-Poisson sampling."""

    @dataclass(frozen=True)
    class RefuseMost(ClientCheck):
        def check(self, received: Tensor, layout: Any, ctx: TransformContext) -> ClientCheckOutput:
            return ClientCheckOutput(torch.tensor([i > 1 for i in ctx.client_ids]))

    spec = {**SPEC, "defense": {"aggregator": "krum", "n_byzantine": 1}}
    sim = _sim(spec, client_checks=(RefuseMost(),))
    state = sim.initial_state()
    new, out = sim.run_round(state)
    assert "aggregation_skipped" in out.record
    torch.testing.assert_close(new.params, state.params)


def test_specs_without_the_new_hooks_keep_their_hash() -> None:
    """The hashes below were computed by the code before the hooks existed (commit b32d351): a
    run directory written then still resumes (its spec hash is unchanged)."""
    import yaml

    quick = parse_spec(yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text()))
    assert quick.spec_hash() == "fc0acc29a62e29b1"
    attacked = {
        "name": "h",
        "defense": {"aggregator": "krum"},
        "attack": {"n_malicious": 1, "model_attack": {"name": "sign_flip"}},
    }
    assert parse_spec(attacked).spec_hash() == "640484025aebbb1e"
    windowed = {**attacked, "attack": {**attacked["attack"], "stop_round": 5}}
    assert parse_spec(windowed).spec_hash() != "640484025aebbb1e"


def test_a_payload_policy_refuses_rules_that_need_whole_updates() -> None:
    """Masked payloads are averaged per coordinate; a robust rule would otherwise be replaced by
    the mean without a word (the old stage did exactly that)."""
    from fedguard.components import check_payload_aggregation
    from fedguard.core.mean import Mean
    from fedguard.errors import IncompatibleError
    from fedguard.registry import build

    check_payload_aggregation(HalfAndHalf(), (Mean(),))
    krum = build("aggregator", "krum", {}, "defense.aggregator", n_byzantine=1)
    with pytest.raises(IncompatibleError, match="krum"):
        check_payload_aggregation(HalfAndHalf(), (krum,))
