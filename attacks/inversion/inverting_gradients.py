"""Inverting gradients (Geiping et al. 2020): cosine gradient matching with total variation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from fedguard.api import require
from fedguard.types import ServerView

from ._common import (
    AttackTarget,
    InversionAttack,
    InversionTask,
    ParamLayout,
    Reconstruction,
    attack_generator,
    batch_gradient,
    cosine_distance,
    observed_direction,
    project,
    signed_adam_step_decay,
    total_variation,
    uniform_init,
)
from .label_recovery import labels_for_target


def invert_gradient(
    model: nn.Module,
    layout: ParamLayout,
    params: Tensor,
    target_gradient: Tensor,
    labels: Tensor,
    *,
    input_shape: tuple[int, ...],
    data_range: tuple[float, float] | None,
    image_shape: tuple[int, int, int] | None,
    iterations: int,
    step_size: float,
    tv_weight: float,
    restarts: int,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """Minimise ``1 − cos(∇_θ L(θ; x′, y), g) + tv_weight·TV(x′)`` over ``x′``.

    Adam on the *sign* of the input gradient, step size ×0.1 at 3/8, 5/8, 7/8 of the
    iterations, projection onto ``data_range`` after each step; ``restarts`` independent uniform
    initialisations, keeping the one with the lowest final objective.
    ``params (d,)``, ``target_gradient (d,)``, ``labels (B,)`` → ``(x (B, *input_shape), loss)``.
    """
    best_x: Tensor | None = None
    best_loss = float("inf")
    params = params.detach()
    target = target_gradient.detach()
    for _ in range(restarts):
        x = uniform_init(labels.shape[0], input_shape, data_range, generator).requires_grad_(True)
        opt, schedule = signed_adam_step_decay([x], step_size, iterations)
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            grad = batch_gradient(model, layout, params, x, labels, create_graph=True)
            loss = cosine_distance(grad, target) + tv_weight * total_variation(x, image_shape)
            (x_grad,) = torch.autograd.grad(loss, x)
            x.grad = x_grad.sign()
            opt.step()
            schedule.step()
            with torch.no_grad():
                project(x, data_range)
        x_final = x.detach()
        with torch.enable_grad():
            grad = batch_gradient(model, layout, params, x_final, labels, create_graph=False)
        final = float(
            cosine_distance(grad, target) + tv_weight * total_variation(x_final, image_shape)
        )
        if final < best_loss:
            best_loss, best_x = final, x_final
    assert best_x is not None
    return best_x, best_loss


@dataclass(frozen=True)
class InvertingGradients(InversionAttack):
    """Reconstruct a client's inputs by matching the direction of its gradient.

    The observed update is treated as a gradient at the broadcast model θ_global (FedSGD; for a
    multi-step FedAvg update this is the approximation SME improves on). Labels are recovered
    first (iDLG / bias counting). Cosine similarity is taken over all layers jointly.

    Parameters
    ----------
    target_client, max_clients, at_round
        Which clients and rounds are attacked (see :class:`TargetedInversion`).
    iterations
        Optimisation steps per restart.
    step_size
        Initial Adam step size on the input (decayed ×0.1 at 3/8, 5/8, 7/8).
    tv_weight
        Weight α of the total-variation prior (images only).
    restarts
        Independent initialisations; the best final objective is kept.
    seed
        Seed of the attack's random stream, combined with the round and client.

    References
    ----------
    Geiping, Bauermeister, Dröge, Moeller. "Inverting Gradients — How easy is it to break privacy
    in federated learning?" NeurIPS 2020.
    """

    attack_name: ClassVar[str] = "inverting_gradients"
    iterations: int = 1000
    step_size: float = 0.1
    tv_weight: float = 1e-4
    restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.iterations >= 1, "iterations", "a positive integer")
        require(self.step_size > 0, "step_size", "a positive number")
        require(self.tv_weight >= 0, "tv_weight", "a non-negative number")
        require(self.restarts >= 1, "restarts", "a positive integer")

    def reconstructor(
        self, view: ServerView, task: InversionTask, layout: ParamLayout
    ) -> Callable[[AttackTarget], Reconstruction]:
        def invert(target: AttackTarget) -> Reconstruction:
            gen = attack_generator(self.seed, view.round, target.client_id, self.attack_name)
            direction = observed_direction(target)
            labels = labels_for_target(task, layout, view.global_params, target, gen)
            x, loss = invert_gradient(
                task.model,
                layout,
                view.global_params.to(task.dtype),
                direction.to(task.dtype),
                labels,
                input_shape=task.input_shape,
                data_range=task.data_range,
                image_shape=task.image_shape,
                iterations=self.iterations,
                step_size=self.step_size,
                tv_weight=self.tv_weight,
                restarts=self.restarts,
                generator=gen,
            )
            return Reconstruction(target.client_id, x, labels, loss)

        return invert


__all__ = ["InvertingGradients", "invert_gradient"]
