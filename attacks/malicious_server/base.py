"""The shared frame of the malicious-server attacks: broadcast a modified model, then invert.

Each attack is a :class:`~fedguard.api.PrivacyAttack` that also subclasses
:class:`~fedguard.api.ServerBroadcast`: at the broadcast stage of round ``at_round`` it sends
parameters of the task's own architecture (nothing added), the clients train honestly (FedSGD:
one full-batch step, so an update is ``−η·∇L`` exactly), and :meth:`observe` reads the
imprinted rows back from what the server sees — each client's update under plain transport,
only their sum under secure aggregation — knowing what it sent (``view.broadcast``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.inversion._common import as_inversion_task
from attacks.malicious_server.layers import FirstLayer, check_relu_mlp, first_layer
from attacks.malicious_server.scoring import (
    MaliciousServerOutput,
    ReconstructionGroup,
    score_groups,
)
from fedguard.api import BroadcastContext, PrivacyAttack, ServerBroadcast, require
from fedguard.errors import IncompatibleError
from fedguard.models.flat import ParamLayout
from fedguard.types import BroadcastPlan, ServerView, Truth

#: ``BroadcastPlan.info`` key marking a round whose broadcast this attack changed; the core
#: records it as ``broadcast_modified``, which the matrix reads to tell attacked rounds apart.
IMPRINT_KEY = "modified"


def public_features(ctx: Any) -> Tensor:
    """The attacker's public sample ``(M, F)`` of the data, from the broadcast context's
    attacker knowledge (its candidate pool's public population)."""
    knowledge = getattr(ctx, "knowledge", None)
    pool = getattr(knowledge, "candidates", None)
    if pool is None or not hasattr(pool, "public_population"):
        raise IncompatibleError(
            "this malicious-server attack estimates the data distribution from public data, but "
            "the broadcast stage gave it no attacker knowledge."
        )
    features, _ = pool.public_population()
    require(features.shape[0] >= 2, "data.validation_fraction", "large enough for public data")
    return features.reshape(features.shape[0], -1)


@dataclass(frozen=True)
class MaliciousServerAttack(PrivacyAttack, ServerBroadcast):
    """Base of the attacks; subclasses set :meth:`plan` and :meth:`recover`.

    Parameters
    ----------
    at_round
        The round (0-based) whose broadcast is modified and whose aggregate is inverted;
        ``None``: every round.
    relative_tol
        Rows whose bias update is below this fraction of the largest are treated as empty
        (their value is the fixed-point rounding of secure aggregation).
    """

    attack_name: ClassVar[str] = ""
    #: the architecture (to read the first layer back) and the candidate pool's public
    #: population (the bins' estimate of the feature distribution)
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture", "candidates"})
    at_round: int | None = 0
    relative_tol: float = 1e-3

    def __post_init__(self) -> None:
        require(
            self.at_round is None or (isinstance(self.at_round, int) and self.at_round >= 0),
            "at_round",
            "a round index ≥ 0, or None (every round)",
        )
        require(0.0 < self.relative_tol < 1.0, "relative_tol", "in (0, 1)")

    def check_compatible(self, spec: Any, components: Any) -> None:
        """Before any training: the attacks need FedSGD (an update is exactly ``−η·∇L``) and
        fedguard's MLP with ReLU (a first layer that is fully connected with a bias); a user's
        own module is checked on its parameter shapes at the broadcast stage."""
        name = self.registry_name or type(self).__name__
        if spec.training.algorithm != "fedsgd":
            raise IncompatibleError(
                f"{name} inverts FedSGD updates; set training.algorithm: fedsgd (got "
                f"{spec.training.algorithm!r})."
            )
        model = spec.model
        if model.name == "mlp" and dict(model.params).get("activation", "relu") != "relu":
            raise IncompatibleError(f"{name} needs model.activation: relu.")
        if model.name not in ("mlp", "torch_module"):  # a user's module: shapes checked later
            raise IncompatibleError(
                f"{name} needs a model whose first layer is fully connected with a bias and "
                f"followed by a ReLU (model.name: mlp); got {model.name!r}."
            )

    def acts_in(self, round_index: int) -> bool:
        return self.at_round is None or round_index == self.at_round

    # -- broadcast ----------------------------------------------------------------------------
    def plan(
        self, global_params: Tensor, layer: FirstLayer, ctx: BroadcastContext
    ) -> BroadcastPlan:
        raise NotImplementedError  # abstract

    def broadcast(self, global_params: Tensor, ctx: BroadcastContext) -> BroadcastPlan:
        if not self.acts_in(ctx.round.round):
            return BroadcastPlan(global_params)
        layer = first_layer(ctx.layout, math.prod(ctx.input_shape))
        return self.plan(global_params, layer, ctx)

    # -- observe ------------------------------------------------------------------------------
    def recover(
        self, update: Tensor, layer: FirstLayer, plan: BroadcastPlan, n_samples: int, task: Any
    ) -> Tensor:
        """``(m, F)`` inputs from one observed update ``(d,)`` (a client's, or a sum)."""
        raise NotImplementedError  # abstract

    def groups(self, view: ServerView, plan: BroadcastPlan) -> list[tuple[tuple[int, ...], Tensor]]:
        """``(clients, update)`` pairs to invert: each client's update when the server sees
        them, else the sum over the round's clients."""
        if view.updates is not None:
            return [((cid,), view.updates[row]) for row, cid in enumerate(view.client_ids)]
        return [(tuple(view.client_ids), view.update_sum)]

    def expected(self, view: ServerView, plan: BroadcastPlan) -> float | None:
        return None

    def observe(self, view: ServerView, env: Any) -> MaliciousServerOutput | None:
        plan = view.broadcast
        if plan is None or not plan.info.get(IMPRINT_KEY) or not self.acts_in(view.round):
            return None
        task = as_inversion_task(env)
        check_relu_mlp(task.model)
        layer = first_layer(ParamLayout.of(task.model), math.prod(task.input_shape))
        counts = dict(zip(view.client_ids, view.num_samples, strict=True))
        groups = []
        for clients, update in self.groups(view, plan):
            n_samples = sum(counts.get(c, 0) for c in clients)
            inputs = self.recover(update.detach(), layer, plan, n_samples, task)
            if task.data_range is not None:
                inputs = inputs.clamp(task.data_range[0], task.data_range[1])
            groups.append(ReconstructionGroup(clients, inputs.float()))
        return MaliciousServerOutput(
            attack=self.attack_name,
            round=view.round,
            groups=tuple(groups),
            data_range=task.data_range,
            expected_recovered=self.expected(view, plan),
        )

    def metrics(self, output: MaliciousServerOutput, truth: Truth) -> dict[str, float]:
        return score_groups(output, truth)


def attack_generator(ctx: BroadcastContext, name: str) -> torch.Generator:
    """The attack's keyed stream for this round (see :mod:`fedguard.rng`)."""
    return ctx.round.generator(f"privacy_attack/{name}")


__all__ = ["IMPRINT_KEY", "MaliciousServerAttack", "attack_generator", "public_features"]
