"""Deep Leakage from Gradients (Zhu et al. 2019): L-BFGS on the squared gradient distance."""

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
    observed_direction,
    project,
)
from .label_recovery import labels_for_target


def dlg_reconstruct(
    model: nn.Module,
    layout: ParamLayout,
    params: Tensor,
    target_gradient: Tensor,
    *,
    n_samples: int,
    n_classes: int,
    input_shape: tuple[int, ...],
    data_range: tuple[float, float] | None,
    iterations: int,
    labels: Tensor | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, float]:
    """Minimise ``‖∇_θ L(θ; x′, y′) − g‖²`` with L-BFGS over the dummy inputs ``x′`` (and the
    dummy soft labels ``y′ = softmax(ℓ′)`` when ``labels`` is ``None``, as in DLG; with labels
    given this is iDLG).

    Dummy inputs start from ``N(0, 1)`` as in the paper; L-BFGS runs ``iterations`` inner
    iterations with a strong-Wolfe line search (the paper's fixed step 1 diverges easily), and
    the result is clipped to ``data_range`` (when bounded) at the end.
    ``→ (x (B, *input_shape), labels (B,), final distance)``.
    """
    params = params.detach()
    target = target_gradient.detach()
    x = torch.randn((n_samples, *input_shape), generator=generator).requires_grad_(True)
    variables = [x]
    label_logits: Tensor | None = None
    if labels is None:
        label_logits = torch.randn((n_samples, n_classes), generator=generator).requires_grad_(True)
        variables.append(label_logits)
    opt = torch.optim.LBFGS(
        variables, lr=1.0, max_iter=iterations, history_size=100, line_search_fn="strong_wolfe"
    )

    def current_labels() -> Tensor:
        if label_logits is not None:
            return torch.softmax(label_logits, dim=-1)
        assert labels is not None
        return labels

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        grad = batch_gradient(model, layout, params, x, current_labels(), create_graph=True)
        loss = ((grad - target) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.enable_grad():
        final = float(closure().detach())
    y_hat = current_labels().detach()
    hard = y_hat.argmax(dim=-1) if y_hat.dim() == 2 else y_hat
    return project(x.detach(), data_range), hard, final


@dataclass(frozen=True)
class DLG(InversionAttack):
    """Deep leakage from gradients: match the raw gradient (Euclidean distance) with L-BFGS.

    The observed update is rescaled to a gradient ``g = −Δ/(η·K)`` (exact for FedSGD), since the
    Euclidean distance is not scale invariant.

    Parameters
    ----------
    target_client, max_clients, at_round
        Which clients and rounds are attacked (see :class:`TargetedInversion`).
    iterations
        L-BFGS iterations.
    recover_labels_first
        Recover labels from the bias gradient first (iDLG) instead of optimising soft labels.
    seed
        Seed of the attack's random stream, combined with the round and client.

    References
    ----------
    Zhu, Liu, Han. "Deep Leakage from Gradients." NeurIPS 2019.
    Zhao, Mopuri, Bilen. "iDLG: Improved Deep Leakage from Gradients." arXiv:2001.02610, 2020.
    """

    attack_name: ClassVar[str] = "dlg"
    iterations: int = 300
    recover_labels_first: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.iterations >= 1, "iterations", "a positive integer")

    def reconstructor(
        self, view: ServerView, task: InversionTask, layout: ParamLayout
    ) -> Callable[[AttackTarget], Reconstruction]:
        def invert(target: AttackTarget) -> Reconstruction:
            gen = attack_generator(self.seed, view.round, target.client_id, self.attack_name)
            direction = observed_direction(target)
            labels = (
                labels_for_target(task, layout, view.global_params, target, gen)
                if self.recover_labels_first
                else None
            )
            x, y_hat, loss = dlg_reconstruct(
                task.model,
                layout,
                view.global_params.to(task.dtype),
                direction.to(task.dtype),
                n_samples=target.n_samples,
                n_classes=task.n_classes,
                input_shape=task.input_shape,
                data_range=task.data_range,
                iterations=self.iterations,
                labels=labels,
                generator=gen,
            )
            return Reconstruction(target.client_id, x, y_hat, loss)

        return invert


__all__ = ["DLG", "dlg_reconstruct"]
