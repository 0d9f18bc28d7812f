"""A federated training run in memory: its setup and the state between rounds.

One round is the pipeline of named stages in :mod:`fedguard.core.round_stages` (sample →
broadcast → client checks → receive → local training → send → client transforms → attacks →
finite check → transport → observe → aggregate → server update → finish). All cross-round state
lives in :class:`SimulationState`, so a run can be checkpointed after any round and resumed
bit-for-bit on CPU (every random draw is keyed by round).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from fedguard.api import ServerBroadcast
from fedguard.core.built_components import Components
from fedguard.core.compose import compose
from fedguard.core.federated_data import FederatedData, build_federated_data
from fedguard.core.knowledge import GRANTS, AttackerKnowledge, attacker_knowledge
from fedguard.core.local_training import TRAINERS, LocalTrainingConfig, Trainer
from fedguard.core.model_checks import check_attacks_fit_model
from fedguard.core.round_stages import play_round
from fedguard.core.round_state import RoundState
from fedguard.core.sampling import sampling_description
from fedguard.core.server_optimizer import ServerOptimizerConfig
from fedguard.core.simulation_state import RoundOutput, SimulationState
from fedguard.errors import ConfigError
from fedguard.models.flat import FlatModel
from fedguard.rng import numpy_generator, stream_seed, torch_generator
from fedguard.spec import RunSpec
from fedguard.types import AggregationContext, LocalTrainingRecipe, RoundContext, Truth


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

    def __init__(self, spec: RunSpec, components: Components) -> None:
        """``components`` are ``spec``'s, built and checked by the registry layer
        (:func:`fedguard.launch.build_simulation` does both)."""
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.components = components
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
            keep_clean=spec.attack.start_round > 0 or spec.attack.stop_round is not None,
        )
        self.clients = self.data.clients.to(self.device)
        #: the malicious clients' unpoisoned data, trained on outside the attack window
        clean = self.data.clean_clients
        self.clean_clients = clean.to(self.device) if clean is not None else self.clients
        module = self.components.model.build(self.data.input_shape, self.data.n_classes)
        check_attacks_fit_model(  # before any training: attacks that need a particular layer
            self.components, module, self.data.input_shape, self.data.n_classes
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(seed, -1, -1, "model_init"))
            self.components.model.initialize(module)  # pre-trained bases keep their weights
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
            c.sampling, c.n_clients, c.cohort_size or 0, c.sampling_rate or 0, c.min_separation or 1
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
        self.recipe = local_training_recipe(spec)
        broadcasters = [
            a for a in self.components.privacy_attacks if isinstance(a, ServerBroadcast)
        ]
        if len(broadcasters) > 1:
            raise ConfigError(
                "attack.privacy_attacks may hold at most one attack that changes the broadcast "
                f"model; got {len(broadcasters)}."
            )
        #: the server-side component that chooses what clients receive (None: an honest server)
        self.broadcaster: ServerBroadcast | None = broadcasters[0] if broadcasters else None
        #: whether the transport binds the received model into secure aggregation
        self.digests_needed = bool(getattr(self.components.transport, "model_commitment", False))

    # ------------------------------------------------------------------ state

    def initial_state(self) -> SimulationState:
        return SimulationState(
            round=0,
            params=self.model.initial_params(),
            client_transform_states=[{} for _ in self.components.client_transforms],
            server_transform_states=[{} for _ in self.components.server_transforms],
            client_check_states=[{} for _ in self.components.client_checks],
        )

    def knowledge(self, grants: frozenset[str] = GRANTS) -> AttackerKnowledge:
        """What a privacy attack is given this round: public facts plus what its threat model
        ``grants`` (an independent copy of the model as it is now, the candidate pool) — not
        this simulation, not the truth."""
        return attacker_knowledge(
            self.model.module, self.data, self.spec.rounds, self.spec.clients.n_clients, grants
        )

    def truth(self) -> Truth:
        private = {i: self.data.client_arrays(i) for i in range(self.spec.clients.n_clients)}
        return Truth(self.malicious, self.free_riders, private, self.data.secrets)

    # ------------------------------------------------------------------ one round

    def run_round(
        self, state: SimulationState, allowed_clients: frozenset[int] | None = None
    ) -> tuple[SimulationState, RoundOutput]:
        """One round: the stages of :mod:`fedguard.core.round_stages` over a fresh
        :class:`RoundState`. ``allowed_clients`` restricts the round's sampled clients to a
        coalition (retraining for valuation) without changing anybody's random draws."""
        ctx = RoundContext(
            state.round,
            self.training_seed,
            state.params,
            (),
            self.spec.clients.n_clients,
            self.device,
        )
        rs = RoundState(ctx, time.perf_counter(), {}, allowed=allowed_clients)
        new_state = play_round(self, state, rs)
        return new_state, RoundOutput(rs.record, rs.events, rs.view, rs.saved)

    # ------------------------------------------------------------------ services for the stages

    def aggregator_oracle(self, state: SimulationState) -> Callable[[Tensor], Tensor]:
        """The server's rule as an attack that knows it may probe it."""
        t = state.round

        def run(updates: Tensor) -> Tensor:
            # the keyed stream of (training seed, round, "aggregator_oracle"): an attacker's
            # probes never share draws with another run or with the real aggregation
            generator = torch_generator(self.training_seed, t, -1, "aggregator_oracle", self.device)
            ctx = AggregationContext(
                t, self.spec.n_byzantine, generator, state.params, state.aggregator_state
            )
            return self.aggregator(updates, None, ctx).aggregate

        return run

    def reference_update(self, state: SimulationState) -> Tensor:
        """The server's own update on its root dataset (the validation split; FLTrust)."""
        from fedguard.core.local_training import ClientData

        val = self.data.validation
        if len(val) == 0:
            raise ConfigError("FLTrust needs a root dataset: set data.validation_fraction above 0.")
        root = ClientData.pad([val.features], [val.labels]).to(self.device)
        return TRAINERS["vectorized"](
            self.model, state.params, root, [0], self.local, self.training_seed + 7919, state.round
        )[0]

    def evaluate(self, params: Tensor, t: int, force: bool) -> dict[str, float]:
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
