"""Shared helpers of the malicious-server tests: digits, the task's MLP, FedSGD, a broadcast
context with the attacker's public data, and one secure-aggregation round called directly."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion._common import InversionTask
from fedguard.models.flat import ParamLayout
from fedguard.models.mlp import MLP
from fedguard.types import BroadcastPlan, LocalTrainingRecipe, RoundContext, ServerView, Truth

INPUT_SHAPE = (1, 8, 8)
LEARNING_RATE = 0.1


def digits() -> tuple[Tensor, Tensor]:
    """sklearn digits as fedguard loads them: ``(1797, 1, 8, 8)`` in [0, 1] and labels."""
    data = load_digits()
    x = torch.as_tensor(data.data / 16.0, dtype=torch.float32).reshape(-1, *INPUT_SHAPE)
    return x, torch.as_tensor(data.target, dtype=torch.long)


def mlp(hidden: int = 64, seed: int = 0) -> nn.Module:
    """The task's own architecture (fedguard's MLP), initialised from a seeded generator."""
    torch.manual_seed(seed)  # test-only: the module's default init
    return MLP(hidden=(hidden,)).build(INPUT_SHAPE, 10)


def flat_params(model: nn.Module) -> Tensor:
    return ParamLayout.of(model).flatten(dict(model.named_parameters())).detach().clone()


def fedsgd_updates(
    model: nn.Module, received: Tensor, batches: list[tuple[Tensor, Tensor]], lr: float
) -> Tensor:
    """``(n, d)`` FedSGD updates ``−η·∇L`` (mean cross-entropy of each full batch), each from the
    model its client received ``(n, d)``."""
    layout = ParamLayout.of(model)
    rows = []
    for theta, (x, y) in zip(received, batches, strict=True):
        theta = theta.detach().clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(functional_call(model, layout.unflatten(theta), (x,)), y)
        (grad,) = torch.autograd.grad(loss, theta)
        rows.append(-lr * grad)
    return torch.stack(rows)


@dataclass(frozen=True)
class _Pool:
    features: Tensor
    labels: Tensor

    def public_population(self) -> tuple[Tensor, Tensor]:
        return self.features, self.labels


def broadcast_context(
    model: nn.Module, ids: tuple[int, ...], public: tuple[Tensor, Tensor], seed: int, round_: int
) -> Any:
    """A broadcast context (the fields of :class:`fedguard.api.BroadcastContext`) that also
    carries the attacker's knowledge of public data."""
    rc = RoundContext(round_, seed, flat_params(model), ids, max(ids) + 1)
    return SimpleNamespace(
        round=rc,
        layout=ParamLayout.of(model),
        input_shape=INPUT_SHAPE,
        n_classes=10,
        knowledge=SimpleNamespace(candidates=_Pool(*public)),
    )


def task(model: nn.Module) -> InversionTask:
    return InversionTask(model, INPUT_SHAPE, 10, (0.0, 1.0), INPUT_SHAPE)


def server_view(
    round_: int,
    ids: tuple[int, ...],
    counts: tuple[int, ...],
    plan: BroadcastPlan,
    updates: Tensor | None,
    update_sum: Tensor,
) -> ServerView:
    return ServerView(
        round=round_,
        global_params=plan.model,
        client_ids=ids,
        updates=updates,
        update_sum=update_sum,
        num_samples=counts,
        recipe=LocalTrainingRecipe("fedsgd", LEARNING_RATE),
        broadcast=plan,
    )


def truth_of(
    ids: tuple[int, ...],
    batches: list[tuple[Tensor, Tensor]],
    population: tuple[Tensor, Tensor] | None = None,
) -> Truth:
    """The round's private batches; ``population`` (the pool the batches come from) is added as
    one more client (id −2) so that the class-mean baseline is taken over the whole pool, as in
    a run, where the truth holds every client's data."""
    private = dict(zip(ids, batches, strict=True))
    if population is not None:
        private[-2] = population
    return Truth((), (), private)
