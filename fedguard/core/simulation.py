"""The federated round loop with the hook points of the design.

One round: sample → broadcast → local training (vectorized) → client transforms (momentum, clip,
noise; privacy events) → malicious replacement → free-riders → transport (plain or secure
aggregation) → observers see the ServerView → (pre-)aggregation → server transforms → server
optimizer → evaluation. All cross-round state lives in :class:`SimulationState`, so a run can be
checkpointed after any round and resumed bit-for-bit on CPU (every random draw is keyed by round).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedguard.api import (
    AttackContext,
    FreeRiderContext,
    TransformContext,
)
from fedguard.components import Components, build_components
from fedguard.config import RunSpec
from fedguard.core.compose import compose
from fedguard.core.federated_data import FederatedData, build_federated_data
from fedguard.core.finite_rows import finite_rows
from fedguard.core.knowledge import AttackerKnowledge, attacker_knowledge
from fedguard.core.local_training import TRAINERS, LocalTrainingConfig, Trainer
from fedguard.core.model_checks import check_attacks_fit_model
from fedguard.core.sampling import sample_clients, sampling_description
from fedguard.core.server_optimizer import ServerOptimizerConfig, server_step
from fedguard.errors import ConfigError, RoundAborted
from fedguard.models.flat import FlatModel
from fedguard.rng import numpy_generator, stream_seed, torch_generator
from fedguard.types import (
    AggregationContext,
    AggregationResult,
    LocalTrainingRecipe,
    RoundContext,
    ServerView,
    Truth,
)

HISTORY = 20  # global deltas kept for free-riders that replay or mimic them


@dataclass
class SimulationState:
    """Everything a resume needs (saved to ``state.pt`` after each round)."""

    round: int  # rounds completed
    params: Tensor
    server_state: dict[str, Tensor] = field(default_factory=dict)
    aggregator_state: dict[str, Any] = field(default_factory=dict)
    client_transform_states: list[dict[str, Any]] = field(default_factory=list)
    server_transform_states: list[dict[str, Any]] = field(default_factory=list)
    global_deltas: list[Tensor] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "params": self.params,
            "server_state": self.server_state,
            "aggregator_state": dict(self.aggregator_state),
            "client_transform_states": [dict(s) for s in self.client_transform_states],
            "server_transform_states": [dict(s) for s in self.server_transform_states],
            "global_deltas": self.global_deltas,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SimulationState:
        return SimulationState(**d)


@dataclass(frozen=True)
class RoundOutput:
    record: dict[str, Any]
    events: dict[str, Any]  # privacy events: {"population": [...], "clients": {id: [...]}}
    view: ServerView | None
    updates: dict[str, Tensor] | None  # what the server saw, for --save-updates


def _choose_roles(spec: RunSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Malicious and free-rider client ids, drawn from their own stream."""
    rng = numpy_generator(spec.seed, -1, -1, "roles")
    frees = spec.attack.free_riders.count if spec.attack.free_riders else 0
    chosen = rng.permutation(spec.clients.n_clients)[: spec.attack.n_malicious + frees]
    malicious = tuple(sorted(int(i) for i in chosen[: spec.attack.n_malicious]))
    free = tuple(sorted(int(i) for i in chosen[spec.attack.n_malicious :]))
    return malicious, free


def local_training_recipe(spec: RunSpec) -> LocalTrainingRecipe:
    """The clients' local training as privacy attacks receive it (the one place it is filled)."""
    t = spec.training
    return LocalTrainingRecipe(
        algorithm=t.algorithm,
        learning_rate=t.learning_rate,
        local_epochs=t.local_epochs,
        batch_size=t.batch_size,
        momentum=t.momentum,
        prox_mu=t.prox_mu,
    )


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was requested but no CUDA GPU is available; use --device cpu."
        )
    return requested


class Simulation:
    """A federated training run in memory; :mod:`fedguard.core.runner` adds storage."""

    def __init__(self, spec: RunSpec, components: Components | None = None) -> None:
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.components = components or build_components(spec)
        self.malicious, self.free_riders = _choose_roles(spec)
        # roles and data follow spec.seed; everything trained follows the training seed
        seed = spec.seed if spec.training_seed is None else spec.training_seed
        self.training_seed = seed
        dataset = self.components.dataset.load()
        self.data: FederatedData = build_federated_data(
            dataset,
            self.components.partitioner,
            spec.clients.n_clients,
            spec.data.test_fraction,
            spec.data.validation_fraction,
            spec.seed,
            self.components.data_attack,
            self.malicious,
            spec.data.duplicate_clients,
        )
        self.clients = self.data.clients.to(self.device)
        module = self.components.model.build(self.data.input_shape, self.data.n_classes)
        check_attacks_fit_model(  # before any training: attacks that need a particular layer
            self.components, module, self.data.input_shape, self.data.n_classes
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(seed, -1, -1, "model_init"))
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.model = FlatModel.of(module.to(self.device))
        self.aggregator = compose(self.components.preaggregators, self.components.aggregator)
        t = spec.training
        self.local = LocalTrainingConfig(
            t.algorithm, t.local_epochs, t.batch_size, t.learning_rate, t.momentum, t.prox_mu
        )
        self.trainer: Trainer = TRAINERS[t.trainer]
        if t.trainer == "vectorized":  # chunks of clients that fit training.max_memory
            from fedguard.core.chunked_training import ChunkedTrainer, parse_memory

            self.trainer = ChunkedTrainer(
                self.trainer, parse_memory(t.max_memory), self.data.input_shape
            )
        self.server_opt = ServerOptimizerConfig(**spec.server.model_dump())
        c = spec.clients
        self.sampling = sampling_description(
            c.sampling, c.n_clients, c.cohort_size or 0, c.sampling_rate or 0
        )
        self.test = (self.data.test.features.to(self.device), self.data.test.labels.to(self.device))
        self.triggered = None
        if self.components.data_attack is not None:
            trig = self.components.data_attack.triggered(
                self.data.test.features, self.data.test.labels
            )
            if trig is not None:
                self.triggered = (trig[0].to(self.device), trig[1].to(self.device))
        self.privacy_outputs: list[tuple[int, Any, Any]] = []

    # ------------------------------------------------------------------ state

    def initial_state(self) -> SimulationState:
        return SimulationState(
            round=0,
            params=self.model.initial_params(),
            client_transform_states=[{} for _ in self.components.client_transforms],
            server_transform_states=[{} for _ in self.components.server_transforms],
        )

    @property
    def knowledge(self) -> AttackerKnowledge:
        """What privacy attacks are given this round (an independent copy of the model as it is
        now, public facts, the candidate pool) — not this simulation, not the truth."""
        return attacker_knowledge(
            self.model.module, self.data, self.spec.rounds, self.spec.clients.n_clients
        )

    def truth(self) -> Truth:
        private = {i: self.data.client_arrays(i) for i in range(self.spec.clients.n_clients)}
        return Truth(self.malicious, self.free_riders, private)

    # ------------------------------------------------------------------ one round

    def run_round(
        self, state: SimulationState, allowed_clients: frozenset[int] | None = None
    ) -> tuple[SimulationState, RoundOutput]:
        """One round. ``allowed_clients`` restricts the round's sampled clients to a coalition
        (retraining for valuation) without changing anybody's random draws."""
        spec, comps = self.spec, self.components
        t = state.round
        started = time.perf_counter()
        c = spec.clients
        ids = sample_clients(
            c.sampling, c.n_clients, c.cohort_size or 0, c.sampling_rate or 0, self.training_seed, t
        )
        if allowed_clients is not None:
            ids = tuple(i for i in ids if i in allowed_clients)
        ctx = RoundContext(t, self.training_seed, state.params, ids, c.n_clients, self.device)
        record: dict[str, Any] = {"round": t + 1, "clients": len(ids)}
        events: dict[str, Any] = {"population": [], "clients": {}}
        if not ids:
            # an empty Poisson draw: the server still releases its noised (zero) aggregate, so
            # that an empty cohort is indistinguishable from a non-empty one (and accounted)
            params, server_state, st_states = self._server_update(
                state, ctx, (), torch.zeros_like(state.params), events
            )
            record.update(self._evaluate(params, t, force=t + 1 == spec.rounds))
            record["seconds"] = time.perf_counter() - started
            new_state = replace(
                state,
                round=t + 1,
                params=params,
                server_state=server_state,
                server_transform_states=st_states,
                global_deltas=[*state.global_deltas, params - state.params][-HISTORY:],
            )
            return new_state, RoundOutput(record, events, None, None)

        mal_set, free_set = set(self.malicious), set(self.free_riders)
        trained = [i for i in ids if i not in free_set]
        counts = self.clients.counts[torch.tensor(ids)].tolist()
        weights = (
            torch.tensor(counts, dtype=torch.float32, device=self.device)
            if c.weighting == "samples"
            else torch.ones(len(ids), device=self.device)
        )

        # local training (honest and malicious clients; free-riders do not train)
        rows_trained = [k for k, i in enumerate(ids) if i not in free_set]
        replaces_training = any(tr.replaces_local_training for tr in comps.client_transforms)
        train_time = time.perf_counter()
        if trained and not replaces_training and len(trained) == len(ids):
            # everyone trained: the trainer's output is the stack (no zero-fill, no copy)
            deltas = self.trainer(
                self.model, state.params, self.clients, trained, self.local, self.training_seed, t
            ).to(torch.get_default_dtype())
        else:
            deltas = torch.zeros(len(ids), state.params.numel(), device=self.device)
        if trained and not replaces_training and len(trained) < len(ids):
            deltas[rows_trained] = self.trainer(
                self.model, state.params, self.clients, trained, self.local, self.training_seed, t
            )
        train_seconds = time.perf_counter() - train_time

        # client transforms, batched over the clients that follow the protocol; a transform that
        # replaces local training (DP-SGD) trains here and reports its own privacy events
        new_ct_states = []
        for k, transform in enumerate(comps.client_transforms):
            tctx = TransformContext(
                ctx,
                tuple(trained),
                state.client_transform_states[k],
                self.sampling,
                comps.aggregator,
            )
            if transform.replaces_local_training:
                out = transform.train(self.model, state.params, self.clients, self.local, tctx)
            else:
                out = transform(deltas[rows_trained], tctx)
            deltas[rows_trained] = out.values.to(deltas.dtype)
            new_ct_states.append(dict(out.state))
            _add_events(events, out.events, trained)

        # malicious replacement
        mal_rows = [k for k, i in enumerate(ids) if i in mal_set]
        honest_rows = [k for k, i in enumerate(ids) if i not in mal_set and i not in free_set]
        if comps.model_attack is not None and mal_rows:
            attack = comps.model_attack
            own = deltas[mal_rows]
            honest = deltas[honest_rows] if attack.omniscient else own
            actx = AttackContext(
                round=t,
                n_malicious=len(mal_rows),
                n_clients=len(ids),
                generator=ctx.generator("model_attack"),
                global_params=state.params,
                own_updates=own,
                aggregator_name=spec.defense.aggregator.name,
                n_byzantine=spec.n_byzantine,
                aggregator=self._aggregator_oracle(state, t) if attack.knows_aggregator else None,
            )
            deltas[mal_rows] = attack(honest, actx).to(deltas.dtype)

        # free-riders
        for k, i in enumerate(ids):
            if i in free_set and comps.free_rider is not None:
                fctx = FreeRiderContext(
                    t, state.params, state.global_deltas, ctx.generator("free_rider", i), i
                )
                deltas[k] = comps.free_rider(fctx)

        # faulty rows (NaN/inf) never reach an aggregator
        finite = finite_rows(deltas).tolist()
        faulty = [i for i, ok in zip(ids, finite, strict=True) if not ok]
        keep = [k for k, ok in enumerate(finite) if ok]
        if not keep:  # nothing finite to aggregate: local training diverged everywhere
            return self._diverged(state, record, events, started, "every update is non-finite")
        kept_ids = tuple(ids[k] for k in keep)
        if faulty:
            deltas, weights = deltas[keep], weights[keep]
        kept_counts = tuple(counts[k] for k in keep)

        # transport
        try:
            transported = comps.transport(deltas, weights, replace(ctx, sampled_ids=kept_ids))
        except RoundAborted as exc:  # e.g. too few survivors to unmask: retry next round
            record.update({"aborted": str(exc), "faulty": faulty})
            record.update(self._evaluate(state.params, t, force=t + 1 == spec.rounds))
            record["seconds"] = time.perf_counter() - started
            return replace(state, round=t + 1), RoundOutput(record, events, None, None)
        _add_events(events, transported.events, kept_ids)
        view = ServerView(
            round=t,
            global_params=state.params,
            client_ids=kept_ids,
            updates=transported.updates,
            update_sum=transported.update_sum,
            num_samples=kept_counts,
            training={**self.local.__dict__, "batch_size": self.local.batch_size},
            recipe=local_training_recipe(spec),
        )
        for attack in comps.privacy_attacks:
            # the attack gets what its threat model grants, built here — never the simulation
            self.privacy_outputs.append((t, attack, attack.observe(view, self.knowledge)))

        # aggregation
        agg_ctx = AggregationContext(
            round=t,
            n_byzantine=spec.n_byzantine,
            generator=ctx.generator("aggregator"),
            global_params=state.params,
            state=state.aggregator_state,
            reference_update=self._reference_update(state, t)
            if comps.aggregator.needs_reference_update
            else None,
            client_ids=kept_ids,
        )
        if transported.updates is not None:
            try:
                result = self.aggregator(transported.updates, weights, agg_ctx)
            except ConfigError as exc:
                if spec.clients.sampling != "poisson":
                    raise
                # a Poisson cohort can fall below the rule's bound: this round changes nothing
                record["aggregation_skipped"] = str(exc)
                result = AggregationResult(
                    torch.zeros_like(state.params), state=state.aggregator_state
                )
        else:
            result = AggregationResult(
                comps.aggregator.from_sum(transported.update_sum, transported.weight_sum)
            )

        _add_events(events, result.events, None)

        params, server_state, new_st_states = self._server_update(
            state, ctx, kept_ids, result.aggregate, events
        )
        if not (torch.isfinite(result.aggregate).all() and torch.isfinite(params).all()):
            # finite updates can still overflow the aggregate or the model; going on would drop
            # every honest client as "faulty" next round
            what = "aggregate" if not torch.isfinite(result.aggregate).all() else "model"
            return self._diverged(state, record, events, started, f"the {what} is inf/NaN")

        flagged = sorted({kept_ids[r] for r in result.flagged} | set(faulty))
        record.update(
            {
                "train_seconds": train_seconds,
                "malicious": [i for i in ids if i in mal_set],
                "free_riders": [i for i in ids if i in free_set],
                "flagged": flagged,
                "faulty": faulty,
                "scores": _id_map(kept_ids, result.scores),
                "weights": _id_map(kept_ids, result.weights),
                "update_norm": float((params - state.params).norm()),
                **{f"transport_{k}": v for k, v in transported.info.items() if _scalar(v)},
            }
        )
        record["compute_seconds"] = time.perf_counter() - started  # excludes evaluation
        record.update(self._evaluate(params, t, force=t + 1 == spec.rounds))
        if not math.isfinite(record.get("test_loss", 0.0)):  # finite weights, overflowing logits
            return self._diverged(
                state, record, events, started, "the model's test loss is inf/NaN"
            )
        record["seconds"] = time.perf_counter() - started
        new_state = SimulationState(
            round=t + 1,
            params=params,
            server_state=server_state,
            aggregator_state=dict(result.state),
            client_transform_states=new_ct_states or state.client_transform_states,
            server_transform_states=new_st_states,
            global_deltas=[*state.global_deltas, params - state.params][-HISTORY:],
        )
        saved = None
        if spec.save_updates:
            saved = {
                "round": torch.tensor(t),
                "global_params": state.params.cpu(),
                "client_ids": torch.tensor(kept_ids),
                "num_samples": torch.tensor(kept_counts),
                "deltas": transported.updates.cpu()
                if transported.updates is not None
                else torch.empty(0),
                "update_sum": transported.update_sum.cpu(),
                "aggregate": result.aggregate.cpu(),
            }
        return new_state, RoundOutput(record, events, view, saved)

    # ------------------------------------------------------------------ helpers

    def _diverged(
        self,
        state: SimulationState,
        record: dict[str, Any],
        events: dict[str, Any],
        started: float,
        why: str,
    ) -> tuple[SimulationState, RoundOutput]:
        """End the round as ``diverged``: the last finite model is kept and the run stops. The
        round's privacy events stay accounted (the noised updates were released)."""
        t = state.round
        record["diverged"] = (
            f"training diverged in round {t + 1}: {why} (updates too large for float32: lower "
            "the learning rates, clip updates or use a robust aggregator)."
        )
        record.update(self._evaluate(state.params, t, force=True))
        record["seconds"] = time.perf_counter() - started
        return replace(state, round=t + 1), RoundOutput(record, events, None, None)

    def _server_update(
        self,
        state: SimulationState,
        ctx: RoundContext,
        client_ids: tuple[int, ...],
        aggregate: Tensor,
        events: dict[str, Any],
    ) -> tuple[Tensor, dict[str, Tensor], list[dict[str, Any]]]:
        """Server transforms (central DP noise) then the server optimizer."""
        comps = self.components
        new_states = []
        for k, transform in enumerate(comps.server_transforms):
            tctx = TransformContext(
                ctx, client_ids, state.server_transform_states[k], self.sampling, comps.aggregator
            )
            out = transform(aggregate, tctx)
            aggregate = out.values
            new_states.append(dict(out.state))
            _add_events(events, out.events, None)
        params, server_state = server_step(
            self.server_opt, state.params, aggregate, state.server_state
        )
        return params, server_state, new_states or state.server_transform_states

    def _aggregator_oracle(self, state: SimulationState, t: int) -> Callable[[Tensor], Tensor]:
        def run(updates: Tensor) -> Tensor:
            # the keyed stream of (training seed, round, "aggregator_oracle"): an attacker's
            # probes never share draws with another run or with the real aggregation
            generator = torch_generator(self.training_seed, t, -1, "aggregator_oracle", self.device)
            ctx = AggregationContext(
                t, self.spec.n_byzantine, generator, state.params, state.aggregator_state
            )
            return self.aggregator(updates, None, ctx).aggregate

        return run

    def _reference_update(self, state: SimulationState, t: int) -> Tensor:
        """The server's own update on its root dataset (the validation split; FLTrust)."""
        from fedguard.core.local_training import ClientData

        val = self.data.validation
        if len(val) == 0:
            raise ConfigError("FLTrust needs a root dataset: set data.validation_fraction above 0.")
        root = ClientData.pad([val.features], [val.labels]).to(self.device)
        return TRAINERS["vectorized"](
            self.model, state.params, root, [0], self.local, self.training_seed + 7919, t
        )[0]

    def _evaluate(self, params: Tensor, t: int, force: bool) -> dict[str, float]:
        if not force and (t + 1) % self.spec.eval_every:
            return {}
        acc, loss = self.model.evaluate(params, *self.test)
        out = {"test_accuracy": acc, "test_loss": loss}
        if not math.isfinite(loss):
            out["test_loss"] = float("nan")
        if self.triggered is not None:
            asr, _ = self.model.evaluate(params, *self.triggered)
            out["backdoor_success"] = asr
        return out


def _add_events(events: dict[str, Any], new: tuple[Any, ...], client_ids) -> None:
    for ev in new:
        data = ev.to_dict() if hasattr(ev, "to_dict") else ev
        if isinstance(data, dict) and "client" in data and client_ids is not None:
            events["clients"].setdefault(str(data["client"]), []).append(data)
        else:
            events["population"].append(data)


def _id_map(ids: tuple[int, ...], values: Tensor | None) -> dict[str, float] | None:
    if values is None or len(values) != len(ids):
        return None
    return {str(i): float(v) for i, v in zip(ids, values.tolist(), strict=True)}


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or (isinstance(v, np.generic))
