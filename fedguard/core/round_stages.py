"""The round as a pipeline of named stages over one :class:`RoundState`.

sample → broadcast → client checks → receive → local training → send (payload) → client
transforms → attacks → finite check → transport → observe → aggregate → server update → finish.

Each stage is a small function ``(sim, state, rs)`` that reads what earlier stages left in ``rs``
and fills its own fields. A stage that ends the round early sets ``rs.outcome``; the stages that
follow are skipped according to :data:`STAGES`, and :func:`finish` is the one exit: it evaluates,
times and builds the next :class:`SimulationState` the same way for every outcome. Every random
draw comes from the keyed streams of :mod:`fedguard.rng` (through ``RoundContext.generator``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from fedguard.api import (
    AttackContext,
    BroadcastContext,
    FreeRiderContext,
    TransformContext,
)
from fedguard.core.finite_rows import finite_rows
from fedguard.core.mean import Mean, mean_from_sum
from fedguard.core.round_state import RoundOutcome, RoundState
from fedguard.core.sampling import sample_clients
from fedguard.core.server_optimizer import server_step
from fedguard.core.simulation_state import SimulationState
from fedguard.core.transport import PlainTransport
from fedguard.errors import ConfigError, RoundAborted
from fedguard.types import AggregationContext, AggregationResult, ServerView

if TYPE_CHECKING:
    from fedguard.core.simulation import Simulation

HISTORY = 20  # global deltas kept for free-riders that replay or mimic them

Stage = Callable[["Simulation", "SimulationState", RoundState], None]


# ---------------------------------------------------------------------------------- sample


def sample(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """The round's cohort (keyed by the training seed and the round), restricted to a coalition
    when valuation retrains without some clients (nobody's draws change)."""
    c, t = sim.spec.clients, state.round
    ids = sample_clients(
        c.sampling,
        c.n_clients,
        c.cohort_size or 0,
        c.sampling_rate or 0,
        sim.training_seed,
        t,
        c.min_separation or 1,
    )
    if rs.allowed is not None:
        ids = tuple(i for i in ids if i in rs.allowed)
    _set_cohort(sim, rs, ids)
    rs.record.update({"round": t + 1, "clients": len(ids)})
    a = sim.spec.attack
    rs.attacking = a.start_round <= t and (a.stop_round is None or t < a.stop_round)
    if not ids:
        rs.end(RoundOutcome.EMPTY)


def _set_cohort(sim: Simulation, rs: RoundState, ids: tuple[int, ...]) -> None:
    rs.ids = ids
    rs.ctx = replace(rs.ctx, sampled_ids=ids)
    rs.counts = sim.clients.counts[torch.tensor(ids, dtype=torch.long)].tolist() if ids else []
    rs.weights = (
        torch.tensor(rs.counts, dtype=torch.float32, device=sim.device)
        if sim.spec.clients.weighting == "samples"
        else torch.ones(len(ids), device=sim.device)
    )


# ------------------------------------------------------------------------------- broadcast


def broadcast(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """What each client receives: the global model, or what a server-side component chose
    (a malicious server: a modified model, or its own model for some clients)."""
    if sim.broadcaster is not None:
        grants: frozenset[str] = getattr(sim.broadcaster, "threat_model", frozenset())
        knowledge = sim.knowledge(grants)
        bctx = BroadcastContext(
            rs.ctx, sim.model.layout, sim.data.input_shape, sim.data.n_classes, knowledge
        )
        plan = sim.broadcaster.broadcast(state.params, bctx)
        rs.plan = plan
        rs.record.update({f"broadcast_{k}": v for k, v in plan.info.items() if _scalar(v)})
        if plan.per_client or plan.model is not state.params:
            rs.starts = plan.received(rs.ids)
    if sim.digests_needed:
        rs.ctx = replace(rs.ctx, model_digests=_digests(state.params, rs))


def _digests(params: Tensor, rs: RoundState) -> tuple[bytes, ...]:
    """SHA-256 of the model each client received (one hash per distinct model)."""
    if rs.starts is None:
        return (_digest(params),) * len(rs.ids)
    return tuple(_digest(row) for row in rs.starts)


def _digest(model: Tensor) -> bytes:
    return hashlib.sha256(model.detach().cpu().contiguous().numpy().tobytes()).digest()


def client_checks(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Each client inspects the model it received; a client that raises an alarm refuses the
    round (it neither trains nor sends)."""
    checks = sim.components.client_checks
    if not checks:
        return
    received = rs.starts if rs.starts is not None else state.params.expand(len(rs.ids), -1)
    alarmed = torch.zeros(len(rs.ids), dtype=torch.bool)
    rs.check_states = []
    for k, check in enumerate(checks):
        tctx = _tctx(sim, rs, rs.ids, state.client_check_states[k])
        out = check.check(received, sim.model.layout, tctx)
        alarmed |= out.alarms.to(torch.bool).cpu()
        rs.check_states.append(dict(out.state))
        if out.scores is not None:
            rs.record.setdefault("check_scores", {}).update(_id_map(rs.ids, out.scores) or {})
    rs.alarms = [i for i, a in zip(rs.ids, alarmed.tolist(), strict=True) if a]
    rs.record["broadcast_alarms"] = rs.alarms
    if rs.alarms:
        keep = [k for k, a in enumerate(alarmed.tolist()) if not a]
        digests = rs.ctx.model_digests
        _set_cohort(sim, rs, tuple(rs.ids[k] for k in keep))
        if digests is not None:
            rs.ctx = replace(rs.ctx, model_digests=tuple(digests[k] for k in keep))
        if rs.starts is not None:
            rs.starts = rs.starts[keep]
        if not rs.ids:
            rs.end(RoundOutcome.EMPTY)


def receive(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """The payload policy's starting points (FedRand: the client's own private parts)."""
    policy = sim.components.payload
    if policy is None:
        return
    received = rs.starts if rs.starts is not None else state.params.expand(len(rs.ids), -1)
    rs.starts = policy.receive(received, _tctx(sim, rs, rs.ids, state.payload_state))


# -------------------------------------------------------------------------- local training


def local_training(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Honest and malicious clients train (vectorized); free-riders do not while they attack.
    A transform that replaces local training (DP-SGD) trains here and reports its own events."""
    comps = sim.components
    trained = _trained_rows(sim, rs)
    trained_ids = [rs.ids[k] for k in trained]
    clients = sim.clients if rs.attacking else sim.clean_clients
    start = rs.starts if rs.starts is not None else state.params
    began = time.perf_counter()
    replacer = next((tr for tr in comps.client_transforms if tr.replaces_local_training), None)
    if trained and replacer is None and len(trained) == len(rs.ids):
        # everyone trained: the trainer's output is the stack (no zero-fill, no copy)
        rs.deltas = sim.trainer(
            sim.model, start, clients, trained_ids, sim.local, sim.training_seed, state.round
        ).to(torch.get_default_dtype())
    else:
        rs.deltas = torch.zeros(len(rs.ids), state.params.numel(), device=sim.device)
    if trained and replacer is None and len(trained) < len(rs.ids):
        rows_start = start[trained] if start.dim() == 2 else start
        rs.deltas[trained] = sim.trainer(
            sim.model, rows_start, clients, trained_ids, sim.local, sim.training_seed, state.round
        )
    if trained and replacer is not None:
        k = comps.client_transforms.index(replacer)
        for rows, group_start in _start_groups(start, trained):
            ids = tuple(rs.ids[r] for r in rows)
            tctx = _tctx(sim, rs, ids, state.client_transform_states[k], group_start)
            out = replacer.train(sim.model, group_start, clients, sim.local, tctx)
            rs.deltas[rows] = out.values.to(rs.deltas.dtype)
            rs.events.add(out.events, _name(replacer))
            rs.replaced_state = dict(out.state)
    rs.train_seconds = time.perf_counter() - began


def _trained_rows(sim: Simulation, rs: RoundState) -> list[int]:
    if not (rs.attacking and sim.free_riders):  # everybody trains (no per-client loop)
        return list(range(len(rs.ids)))
    free = set(sim.free_riders)
    return [k for k, i in enumerate(rs.ids) if i not in free]


def _start_groups(start: Tensor, rows: list[int]) -> list[tuple[list[int], Tensor]]:
    """Rows that start from the same model, with that model (one group without per-client
    starts; one group per distinct row otherwise, in order of first appearance).

    Rows are grouped by their bytes in one pass (a dictionary, not a comparison with every group
    so far) under ``torch.equal``'s equality: ``-0.0`` is written as ``0.0`` first, and a row
    holding a NaN equals no other row (a group of its own).
    """
    if start.dim() == 1:
        return [(rows, start)]
    canonical = (start[rows] + 0.0).contiguous()  # (k, d); + 0.0 turns -0.0 into 0.0
    has_nan = torch.isnan(canonical).any(dim=1).tolist()
    raw = canonical.view(torch.uint8).cpu().numpy()  # (k, d · element size) bytes of each row
    groups: dict[bytes | int, tuple[list[int], Tensor]] = {}
    for k, (r, nan) in enumerate(zip(rows, has_nan, strict=True)):
        key: bytes | int = k if nan else raw[k].tobytes()
        group = groups.get(key)
        if group is None:
            groups[key] = ([r], start[r])
        else:
            group[0].append(r)
    return list(groups.values())


def send(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """What the clients send (the payload policy): only the coordinates in ``sent_mask`` leave a
    client; the others stay private (FedRand's private halves of the adapters)."""
    policy = sim.components.payload
    if policy is None:
        return
    assert rs.deltas is not None
    starts = rs.starts if rs.starts is not None else state.params.expand(len(rs.ids), -1)
    payload = policy.send(rs.deltas, starts, _tctx(sim, rs, rs.ids, state.payload_state))
    rs.deltas = payload.values.to(rs.deltas.dtype)
    rs.payload_state = dict(payload.state)
    if payload.mask is not None:
        rs.sent_mask = payload.mask.to(torch.bool)
        _apply_mask(rs)


def _apply_mask(rs: RoundState) -> None:
    if rs.sent_mask is not None and rs.deltas is not None:
        rs.deltas.masked_fill_(~rs.sent_mask, 0.0)


# ---------------------------------------------------------------- client transforms, attacks


def client_transforms(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Momentum, clipping, noise … batched over the clients that follow the protocol; their
    privacy events go to the ledger."""
    assert rs.deltas is not None
    trained = _trained_rows(sim, rs)
    trained_ids = tuple(rs.ids[k] for k in trained)
    states: list[dict[str, Any]] = []
    for k, transform in enumerate(sim.components.client_transforms):
        if transform.replaces_local_training:  # it trained in the local-training stage
            own = rs.replaced_state
            states.append(own if own is not None else dict(state.client_transform_states[k]))
            continue
        tctx = _tctx(sim, rs, trained_ids, state.client_transform_states[k])
        out = transform(rs.deltas[trained], tctx)
        rs.deltas[trained] = out.values.to(rs.deltas.dtype)
        states.append(dict(out.state))
        rs.events.add(out.events, _name(transform))
    rs.client_transform_states = states
    _apply_mask(rs)  # noise never fills a coordinate a client keeps private


def attacks(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Malicious clients replace their updates; free-riders send what they forge (inside the
    attack window only)."""
    if not rs.attacking:
        return
    assert rs.deltas is not None
    comps, t = sim.components, state.round
    if comps.model_attack is None and comps.free_rider is None:
        return  # nobody replaces an update (no per-client loop)
    mal, free = set(sim.malicious), set(sim.free_riders)
    mal_rows = [k for k, i in enumerate(rs.ids) if i in mal]
    honest_rows = [k for k, i in enumerate(rs.ids) if i not in mal and i not in free]
    if comps.model_attack is not None and mal_rows:
        attack = comps.model_attack
        own = rs.deltas[mal_rows]
        actx = AttackContext(
            round=t,
            n_malicious=len(mal_rows),
            n_clients=len(rs.ids),
            generator=rs.ctx.generator("model_attack"),
            global_params=state.params,
            own_updates=own,
            aggregator_name=sim.spec.defense.aggregator.name,
            n_byzantine=sim.spec.n_byzantine,
            aggregator=sim.aggregator_oracle(state) if attack.knows_aggregator else None,
        )
        honest = rs.deltas[honest_rows] if attack.omniscient else own
        rs.deltas[mal_rows] = attack(honest, actx).to(rs.deltas.dtype)
    if comps.free_rider is not None:
        for k, i in enumerate(rs.ids):
            if i in free:
                fctx = FreeRiderContext(
                    t, state.params, state.global_deltas, rs.ctx.generator("free_rider", i), i
                )
                rs.deltas[k] = comps.free_rider(fctx)
    _apply_mask(rs)  # the protocol accepts only the coordinates a client sends


# ------------------------------------------------------------------ finite check, transport


def finite_check(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Faulty rows (NaN/inf) never reach an aggregator."""
    assert rs.deltas is not None and rs.weights is not None
    finite_mask = finite_rows(rs.deltas)  # (n,)
    if bool(finite_mask.all()):  # the common case: nothing to drop, no per-client loop
        rs.faulty, rs.kept_ids, rs.kept_counts = [], rs.ids, tuple(rs.counts)
        return
    finite = finite_mask.tolist()
    rs.faulty = [i for i, ok in zip(rs.ids, finite, strict=True) if not ok]
    keep = [k for k, ok in enumerate(finite) if ok]
    if not keep:  # nothing finite to aggregate: local training diverged everywhere
        rs.end(RoundOutcome.DIVERGED, "every update is non-finite")
        return
    rs.kept_ids = tuple(rs.ids[k] for k in keep)
    rs.kept_counts = tuple(rs.counts[k] for k in keep)
    if rs.faulty:
        rs.deltas, rs.weights = rs.deltas[keep], rs.weights[keep]
        if rs.sent_mask is not None:
            rs.sent_mask = rs.sent_mask[keep]
        if rs.ctx.model_digests is not None:
            rs.ctx = replace(rs.ctx, model_digests=tuple(rs.ctx.model_digests[k] for k in keep))


def transport(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Plain or secure aggregation: the server receives what the transport reveals."""
    assert rs.deltas is not None and rs.weights is not None
    try:
        rs.transported = sim.components.transport(
            rs.deltas, rs.weights, replace(rs.ctx, sampled_ids=rs.kept_ids)
        )
    except RoundAborted as exc:  # e.g. too few survivors to unmask: retry next round
        rs.end(RoundOutcome.ABORTED, str(exc))
        return
    rs.events.add(rs.transported.events, _name(sim.components.transport))


def observe(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Privacy attacks observe the ServerView and what their threat model grants (built by the
    core) — never the simulation or the truth."""
    assert rs.transported is not None
    rs.view = ServerView(
        round=state.round,
        global_params=state.params,
        client_ids=rs.kept_ids,
        updates=rs.transported.updates,
        update_sum=rs.transported.update_sum,
        num_samples=rs.kept_counts,
        training={**sim.local.__dict__, "batch_size": sim.local.batch_size},
        recipe=sim.recipe,
        broadcast=rs.plan,
        sent_mask=rs.sent_mask,
    )
    for attack in sim.components.privacy_attacks:
        knowledge = sim.knowledge(attack.threat_model)  # only what its threat model grants
        sim.privacy_outputs.append((state.round, attack, attack.observe(rs.view, knowledge)))


# ------------------------------------------------------------------------------- aggregate


def aggregate(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """(Pre-)aggregation; a cohort below the rule's bound is a typed outcome, not an error;
    with a payload mask each coordinate is averaged over the clients that sent it."""
    spec, comps = sim.spec, sim.components
    out = rs.transported
    assert out is not None and rs.weights is not None
    shortfall = _cohort_shortfall(sim, len(rs.kept_ids))
    if shortfall is not None:
        rs.outcome = RoundOutcome.BELOW_BOUND
        rs.record["aggregation_skipped"] = shortfall
        rs.result = AggregationResult(torch.zeros_like(state.params), state=state.aggregator_state)
        return
    if rs.sent_mask is not None:
        per_coordinate = (rs.weights[:, None] * rs.sent_mask).sum(dim=0)  # public: who sent what
        rs.result = AggregationResult(out.update_sum / per_coordinate.clamp_min(1e-12))
    elif out.updates is not None and _plain_mean(sim):
        # the transport's weighted sum is the mean's numerator: not computed a second time
        rs.result = mean_from_sum(out.update_sum, rs.weights)
    elif out.updates is not None:
        ctx = AggregationContext(
            round=state.round,
            n_byzantine=spec.n_byzantine,
            generator=rs.ctx.generator("aggregator"),
            global_params=state.params,
            state=state.aggregator_state,
            reference_update=sim.reference_update(state)
            if comps.aggregator.needs_reference_update
            else None,
            client_ids=rs.kept_ids,
        )
        rs.result = sim.aggregator(out.updates, rs.weights, ctx)
    else:
        rs.result = AggregationResult(comps.aggregator.from_sum(out.update_sum, out.weight_sum))
    rs.events.add(rs.result.events, _name(comps.aggregator))


def _plain_mean(sim: Simulation) -> bool:
    """The default pair, FedAvg's mean behind the plain transport: the transport's
    ``update_sum`` is then exactly the ``weights @ updates`` the mean would compute."""
    return type(sim.aggregator) is Mean and type(sim.components.transport) is PlainTransport


def _cohort_shortfall(sim: Simulation, n: int) -> str | None:
    """Why ``n`` clients are too few for the aggregation rule (Poisson cohorts, clients dropped
    as faulty or alarmed), or ``None``. The bound is checked before aggregating, so an error
    inside the rule itself is never mistaken for it."""
    check = getattr(sim.aggregator, "check_cohort", None)  # a bare function has no bound
    if check is None:
        return None
    try:
        check(n, sim.spec.n_byzantine)
    except ConfigError as exc:
        return str(exc)
    return None


def server_update(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    """Server transforms (central DP noise), then the server optimizer. An empty cohort
    releases a noised zero aggregate like any other round."""
    aggregate_ = rs.result.aggregate if rs.result is not None else torch.zeros_like(state.params)
    ids = rs.kept_ids if rs.outcome is not RoundOutcome.EMPTY else ()
    new_states = []
    for k, transform in enumerate(sim.components.server_transforms):
        out = transform(aggregate_, _tctx(sim, rs, ids, state.server_transform_states[k]))
        aggregate_ = out.values
        new_states.append(dict(out.state))
        rs.events.add(out.events, _name(transform))
    rs.params, rs.server_state = server_step(
        sim.server_opt, state.params, aggregate_, state.server_state
    )
    rs.server_transform_states = new_states or state.server_transform_states
    if rs.result is not None and not torch.isfinite(rs.result.aggregate).all():
        # finite updates can still overflow the aggregate; going on would drop every honest
        # client as "faulty" next round
        rs.end(RoundOutcome.DIVERGED, "the aggregate is inf/NaN")
    elif not torch.isfinite(rs.params).all():
        rs.end(RoundOutcome.DIVERGED, "the model is inf/NaN")


# ---------------------------------------------------------------------------------- finish


def finish(sim: Simulation, state: SimulationState, rs: RoundState) -> SimulationState:
    """The one exit of every round: record, evaluation, timing and the next state."""
    t, spec, record = state.round, sim.spec, rs.record
    last = t + 1 == spec.rounds
    if rs.outcome is RoundOutcome.ABORTED:
        record.update({"aborted": rs.why, "faulty": rs.faulty})
        record.update(sim.evaluate(state.params, t, force=last))
        record["seconds"] = time.perf_counter() - rs.started
        return replace(state, round=t + 1)
    if rs.outcome is not RoundOutcome.DIVERGED:
        assert rs.params is not None and rs.server_state is not None
        if rs.outcome is not RoundOutcome.EMPTY:
            _record_completed(sim, state, rs)
            record["compute_seconds"] = time.perf_counter() - rs.started  # excl. evaluation
        record.update(sim.evaluate(rs.params, t, force=last))
        if not math.isfinite(record.get("test_loss", 0.0)):  # finite weights, huge logits
            rs.end(RoundOutcome.DIVERGED, "the model's test loss is inf/NaN")
    if rs.outcome is RoundOutcome.DIVERGED:
        record["diverged"] = (
            f"training diverged in round {t + 1}: {rs.why} (updates too large for float32: lower "
            "the learning rates, clip updates or use a robust aggregator)."
        )
        record.update(sim.evaluate(state.params, t, force=True))
        record["seconds"] = time.perf_counter() - rs.started
        rs.view, rs.saved = None, None
        return replace(state, round=t + 1)
    record["seconds"] = time.perf_counter() - rs.started
    assert rs.params is not None and rs.server_state is not None
    completed = rs.outcome is not RoundOutcome.EMPTY
    return SimulationState(
        round=t + 1,
        params=rs.params,
        server_state=rs.server_state,
        aggregator_state=dict(rs.result.state)
        if completed and rs.result is not None
        else state.aggregator_state,
        client_transform_states=rs.client_transform_states or state.client_transform_states,
        server_transform_states=rs.server_transform_states or state.server_transform_states,
        global_deltas=[*state.global_deltas, rs.params - state.params][-HISTORY:],
        client_check_states=rs.check_states or state.client_check_states,
        payload_state=rs.payload_state if rs.payload_state is not None else state.payload_state,
    )


def _record_completed(sim: Simulation, state: SimulationState, rs: RoundState) -> None:
    assert rs.result is not None and rs.transported is not None and rs.params is not None
    result, kept = rs.result, rs.kept_ids
    rs.record.update(
        {
            "train_seconds": rs.train_seconds,
            "malicious": _members(rs.ids, sim.malicious) if rs.attacking else [],
            "free_riders": _members(rs.ids, sim.free_riders) if rs.attacking else [],
            "flagged": sorted({kept[r] for r in result.flagged} | set(rs.faulty)),
            "faulty": rs.faulty,
            "scores": _id_map(kept, result.scores),
            "weights": _id_map(kept, result.weights),
            "update_norm": float((rs.params - state.params).norm()),
            **{f"transport_{k}": v for k, v in rs.transported.info.items() if _scalar(v)},
        }
    )
    if rs.sent_mask is not None and rs.transported.updates is not None:
        # in the clear a client sends only its masked part (the server chose, or knows, which
        # coordinates): bytes of the values it sends, not of the dense vector the core holds
        sent = rs.sent_mask.sum(dim=1).double().mean().item()
        rs.record["transport_bytes_per_client"] = sent * rs.transported.updates.element_size()
    if sim.spec.save_updates:
        out = rs.transported
        rs.saved = {
            "round": torch.tensor(state.round),
            "global_params": state.params.cpu(),
            "client_ids": torch.tensor(kept),
            "num_samples": torch.tensor(rs.kept_counts),
            "deltas": out.updates.cpu() if out.updates is not None else torch.empty(0),
            "update_sum": out.update_sum.cpu(),
            "aggregate": result.aggregate.cpu(),
        }


# ------------------------------------------------------------------------------- pipeline

_WITH_COHORT = frozenset({RoundOutcome.COMPLETED})
_ANY_LIVE = frozenset({RoundOutcome.COMPLETED, RoundOutcome.EMPTY, RoundOutcome.BELOW_BOUND})

#: the stages in order, each with the outcomes under which it runs
STAGES: tuple[tuple[str, Stage, frozenset[RoundOutcome]], ...] = (
    ("sample", sample, _WITH_COHORT),
    ("broadcast", broadcast, _WITH_COHORT),
    ("client_checks", client_checks, _WITH_COHORT),
    ("receive", receive, _WITH_COHORT),
    ("local_training", local_training, _WITH_COHORT),
    ("send", send, _WITH_COHORT),
    ("client_transforms", client_transforms, _WITH_COHORT),
    ("attacks", attacks, _WITH_COHORT),
    ("finite_check", finite_check, _WITH_COHORT),
    ("transport", transport, _WITH_COHORT),
    ("observe", observe, _WITH_COHORT),
    ("aggregate", aggregate, _WITH_COHORT),
    ("server_update", server_update, _ANY_LIVE),
)


def play_round(sim: Simulation, state: SimulationState, rs: RoundState) -> SimulationState:
    """Run every stage that applies to the round's outcome so far, then :func:`finish`."""
    for _name, stage, runs_when in STAGES:
        if rs.outcome in runs_when:
            stage(sim, state, rs)
    return finish(sim, state, rs)


# --------------------------------------------------------------------------------- helpers


def _tctx(
    sim: Simulation,
    rs: RoundState,
    ids: tuple[int, ...],
    own_state: Any,
    global_params: Tensor | None = None,
) -> TransformContext:
    ctx = rs.ctx if global_params is None else replace(rs.ctx, global_params=global_params)
    return TransformContext(
        ctx, ids, own_state or {}, sim.sampling, sim.components.aggregator, sim.model.layout
    )


def _name(component: object) -> str:
    return getattr(component, "registry_name", "") or type(component).__name__


def _id_map(ids: tuple[int, ...], values: Tensor | None) -> dict[str, float] | None:
    if values is None or len(values) != len(ids):
        return None
    if not values.is_floating_point():  # the record holds floats whatever the rule returns
        values = values.double()
    # tolist() gives Python floats (float32 values widened exactly, as float() did)
    return dict(zip(map(str, ids), values.tolist(), strict=True))


def _members(ids: tuple[int, ...], group: Any) -> list[int]:
    """The ``ids`` that belong to ``group`` (in cohort order); no loop when the group is empty."""
    if not group:
        return []
    members = set(group)
    return [i for i in ids if i in members]


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or isinstance(v, np.generic)


__all__ = ["HISTORY", "STAGES", "play_round"]
