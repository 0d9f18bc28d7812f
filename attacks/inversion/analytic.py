"""Analytic input recovery from a fully connected first layer with bias."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.inversion._common import (
    AttackTarget,
    InversionAttack,
    InversionTask,
    ParamLayout,
    Reconstruction,
    first_parametrized_module,
    observed_direction,
    param_name,
    project,
)
from attacks.inversion.label_recovery import labels_for_target
from fedguard.api import require
from fedguard.errors import IncompatibleError
from fedguard.types import ServerView


def fc_input_candidates(weight_grad: Tensor, bias_grad: Tensor, relative_tol: float) -> Tensor:
    """One candidate input per row with a non-negligible bias gradient.

    For ``z = Wx + b`` and a batch of ``B`` samples, ``∂L/∂W_i = Σ_n δ_{n,i} x_nᵀ`` and
    ``∂L/∂b_i = Σ_n δ_{n,i}``, so row ``i`` gives ``Σ_n w_{n,i} x_n`` with ``Σ_n w_{n,i} = 1``:
    exactly one sample's input when only that sample reaches unit ``i`` (always for ``B = 1``).
    ``(out, in) × (out,) → (k, in)``, rows ordered by decreasing ``|∂L/∂b_i|``.
    """
    mag = bias_grad.abs()  # (out,)
    keep = torch.nonzero(mag > relative_tol * mag.max()).flatten()
    keep = keep[torch.argsort(mag[keep], descending=True, stable=True)]
    return weight_grad[keep] / bias_grad[keep, None]  # (k, in)


def analytic_single(weight_grad: Tensor, bias_grad: Tensor) -> Tensor:
    """Exact single-sample recovery ``x = ∂L/∂W_i ÷ ∂L/∂b_i``, pooled over rows by least squares.

    With ``∂L/∂W = δ xᵀ`` and ``∂L/∂b = δ``, the least-squares solution of ``W_grad = b_grad xᵀ``
    is ``x = W_gradᵀ b_grad / ‖b_grad‖²`` — the per-row ratio weighted by ``δ_i²``, which is exact
    for one sample and avoids dividing by tiny ``δ_i``. ``(out, in) × (out,) → (in,)``.
    """
    w = weight_grad.double()
    b = bias_grad.double()
    return (b @ w / (b @ b)).to(weight_grad.dtype)


def in_range_first(
    candidates: Tensor, data_range: tuple[float, float] | None, n_samples: int
) -> Tensor:
    """Drop candidates outside the valid range (mixtures with negative weights) when at least
    ``n_samples`` valid ones remain (nothing to drop when unbounded). ``(k, in) → (k′, in)``."""
    if data_range is None:
        return candidates
    low, high = data_range
    slack = 1e-3 * (high - low)
    valid = ((candidates >= low - slack) & (candidates <= high + slack)).all(dim=1)  # (k,)
    return candidates[valid] if int(valid.sum()) >= n_samples else candidates


def select_distinct(candidates: Tensor, n_samples: int, relative_tol: float = 1e-4) -> Tensor:
    """Pick ``n_samples`` candidates, preferring inputs that several rows agree on.

    Rows reached by a single sample reproduce that sample exactly, so inputs recovered by two or
    more rows are almost surely genuine; mixtures rarely coincide. Groups of (near-)identical
    candidates are ranked by size, then by the first (largest-``|δ|``) row; missing picks are
    filled by farthest-point selection. ``(k, in) → (min(k, n_samples), in)``.
    """
    k = candidates.shape[0]
    if k <= n_samples:
        return candidates
    dist = torch.cdist(candidates.double(), candidates.double())  # (k, k)
    scale = candidates.double().norm(dim=1).clamp_min(1e-12)  # (k,)
    same = dist <= relative_tol * torch.maximum(scale[:, None], scale[None, :])  # (k, k)
    group_size = same.sum(dim=1)  # (k,)
    order = sorted(range(k), key=lambda i: (-int(group_size[i]), i))
    chosen: list[int] = []
    taken = torch.zeros(k, dtype=torch.bool)
    for i in order:
        if len(chosen) == n_samples or group_size[i] < 2:
            break
        if not taken[i]:
            chosen.append(i)
            taken |= same[i]
    while len(chosen) < n_samples:
        free = torch.nonzero(~taken).flatten()
        if free.numel() == 0:
            break
        if chosen:
            d = dist[free][:, chosen].min(dim=1).values
            i = int(free[int(torch.argmax(d))])
        else:
            i = int(free[0])
        chosen.append(i)
        taken |= same[i]
    return candidates[torch.as_tensor(chosen, dtype=torch.long)]


def first_fc_layer(model: nn.Module, input_numel: int) -> tuple[str, str]:
    """Names of the weight and bias of the model's first layer, which must be Linear with bias
    reading the raw input; otherwise a clear :class:`IncompatibleError`."""
    prefix, module = first_parametrized_module(model)
    if not isinstance(module, nn.Linear) or module.bias is None:
        raise IncompatibleError(
            "the analytic attack needs a model whose first layer is fully connected with a bias "
            f"(got {type(module).__name__}); use inverting_gradients for this model."
        )
    if module.in_features != input_numel:
        raise IncompatibleError(
            f"the first fully connected layer reads {module.in_features} features but an input "
            f"has {input_numel}; the analytic attack needs the layer to read the raw input."
        )
    return param_name(prefix, "weight"), param_name(prefix, "bias")


@dataclass(frozen=True)
class AnalyticInversion(InversionAttack):
    """Closed-form input recovery from the first fully connected layer's gradient.

    For a single sample the recovery is exact (up to float rounding); for a batch, rows reached by
    one sample only give that sample, and :func:`select_distinct` picks them. On a multi-step
    FedAvg update the ratio is only approximate. Labels come from :mod:`label_recovery`.

    Parameters
    ----------
    target_client, max_clients, at_round
        Which clients and rounds are attacked (see :class:`TargetedInversion`).
    relative_tol
        Rows whose ``|∂L/∂b_i|`` is below this fraction of the largest are ignored.

    References
    ----------
    Phong, Aono, Hayashi, Wang, Moriai. "Privacy-Preserving Deep Learning via Additively
    Homomorphic Encryption." IEEE TIFS 13(5), 2018 (x = ∂L/∂W_i ÷ ∂L/∂b_i).
    Fowl, Geiping, Czaja, Goldblum, Goldstein. "Robbing the Fed: Directly Obtaining Private Data
    in Federated Learning with Modified Models." ICLR 2022 (batches: rows reached by one sample).
    """

    attack_name: ClassVar[str] = "analytic"
    relative_tol: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.relative_tol < 1.0, "relative_tol", "in [0, 1)")

    def check_model(self, model: nn.Module, input_shape: tuple[int, ...], n_classes: int) -> None:
        """The first layer must be fully connected with bias and read the raw input."""
        first_fc_layer(model, math.prod(input_shape))
        super().check_model(model, input_shape, n_classes)

    def reconstructor(
        self, view: ServerView, task: InversionTask, layout: ParamLayout
    ) -> Callable[[AttackTarget], Reconstruction]:
        w_name, b_name = first_fc_layer(task.model, math.prod(task.input_shape))

        def invert(target: AttackTarget) -> Reconstruction:
            grad = observed_direction(target)  # (d,)
            w_grad = grad[layout.slice_of(w_name)].view(layout.shapes[layout.names.index(w_name)])
            b_grad = grad[layout.slice_of(b_name)]
            if target.n_samples == 1:
                x = analytic_single(w_grad, b_grad)[None]  # (1, in)
            else:
                cands = in_range_first(
                    fc_input_candidates(w_grad, b_grad, self.relative_tol),
                    task.data_range,
                    target.n_samples,
                )
                x = select_distinct(cands, target.n_samples)
            x = project(x.reshape(x.shape[0], *task.input_shape).detach(), task.data_range)
            labels = labels_for_target(
                task, layout, view.global_params, target, None, probe_inputs=x
            )
            return Reconstruction(
                client_id=target.client_id, inputs=x, labels=labels, matching_loss=0.0
            )

        return invert


__all__ = [
    "AnalyticInversion",
    "analytic_single",
    "fc_input_candidates",
    "in_range_first",
    "select_distinct",
]
