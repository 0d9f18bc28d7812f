"""Training many small models at once (shadow / reference models for membership inference).

Models are a stacked ``(K, d)`` tensor of flat parameters; one mini-batch SGD step of all ``K``
models is a single :func:`torch.func.vmap` over :func:`torch.func.grad` of a
:func:`torch.func.functional_call` — the same machinery as fedguard's vectorized clients.
:func:`train_sequential` is the one-by-one reference implementation the tests compare against.
All batches are drawn up front from the passed generator, so both trainers see identical batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from fedguard.api import require
from fedguard.models.flat import logits_in_slices

from ..inversion._common import ParamLayout


@dataclass(frozen=True)
class TrainingRecipe:
    """Mini-batch SGD of reference models: ``steps`` steps on batches of ``batch_size``.

    Each step: mean cross-entropy of the batch (+ ``weight_decay·θ`` and the FedProx term
    ``prox_mu·(θ − θ₀)`` added to the gradient, ``θ₀`` the starting point), then heavy-ball
    momentum ``buf ← μ·buf + g; θ ← θ − lr·buf`` (PyTorch's convention, as fedguard's clients).
    ``drop_last``: each epoch's last partial batch is dropped (the shadow-model convention);
    ``False`` keeps it, as fedguard's local training does.
    """

    steps: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    prox_mu: float = 0.0
    drop_last: bool = True

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps", "a positive integer")
        require(self.batch_size >= 1, "batch_size", "a positive integer")
        require(self.lr > 0, "lr", "a positive number")
        require(0.0 <= self.momentum < 1.0, "momentum", "in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "a non-negative number")
        require(self.prox_mu >= 0, "prox_mu", "a non-negative number")


def random_subsets(
    n_models: int, n_points: int, generator: torch.Generator, subset_size: int | None = None
) -> Tensor:
    """Membership masks ``(K, N)``: each model gets a uniformly random subset of ``subset_size``
    points (default ``⌊N/2⌋``, so each point is in about half of the models)."""
    size = n_points // 2 if subset_size is None else subset_size
    require(1 <= size <= n_points, "subset_size", f"between 1 and the pool size {n_points}")
    keys = torch.rand((n_models, n_points), generator=generator)  # (K, N)
    ranks = torch.argsort(torch.argsort(keys, dim=1), dim=1)  # (K, N)
    return ranks < size


def member_indices(mask: Tensor) -> Tensor:
    """``(K, N)`` boolean masks with equal row sums → ``(K, M)`` sorted member indices."""
    counts = mask.sum(dim=1)
    require(bool((counts == counts[0]).all()), "membership masks", "of equal size for every model")
    return torch.nonzero(mask)[:, 1].view(mask.shape[0], int(counts[0]))


def draw_batches(members: Tensor, recipe: TrainingRecipe, generator: torch.Generator) -> Tensor:
    """Batch indices ``(steps, K, B)``: each model reshuffles its own ``M`` members every epoch
    and takes consecutive batches of ``B = min(batch_size, M)``. With ``recipe.drop_last`` the
    last partial batch of an epoch is dropped; otherwise it is kept and padded with ``-1``
    (positions :func:`train_stacked` masks out), as in fedguard's local training."""
    n_models, m = members.shape
    b = min(recipe.batch_size, m)
    per_epoch = m // b if recipe.drop_last else -(-m // b)
    epochs = math.ceil(recipe.steps / per_epoch)
    keys = torch.rand((epochs, n_models, m), generator=generator)  # (E, K, M)
    perm = torch.argsort(keys, dim=2)
    shuffled = torch.gather(members.expand(epochs, -1, -1), 2, perm)  # (E, K, M)
    if per_epoch * b > m:  # pad the partial last batch
        pad = shuffled.new_full((epochs, n_models, per_epoch * b - m), -1)
        shuffled = torch.cat([shuffled, pad], dim=2)
    batches = shuffled[:, :, : per_epoch * b].reshape(epochs, n_models, per_epoch, b)
    return batches.permute(0, 2, 1, 3).reshape(epochs * per_epoch, n_models, b)[: recipe.steps]


def init_stacked(layout: ParamLayout, n_models: int, generator: torch.Generator) -> Tensor:
    """PyTorch's default init, ``U(±1/√fan_in)`` for weights and biases, for ``K`` models.

    ``fan_in`` is the product of a weight's trailing dimensions; a bias uses the fan-in of the
    weight just before it in the layout. ``→ (K, d)``.
    """
    chunks = []
    fan_in = 1
    for shape in layout.shapes:
        if len(shape) >= 2:
            fan_in = math.prod(shape[1:])
        bound = fan_in**-0.5
        numel = math.prod(shape)
        chunks.append((torch.rand((n_models, numel), generator=generator) * 2 - 1) * bound)
    return torch.cat(chunks, dim=1)


def _loss(model: nn.Module, layout: ParamLayout, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
    logits = functional_call(model, layout.unflatten(flat), (x,))
    return nn.functional.cross_entropy(logits, y)


def _masked_loss(
    model: nn.Module, layout: ParamLayout, flat: Tensor, x: Tensor, y: Tensor, keep: Tensor
) -> Tensor:
    """Mean cross-entropy over the batch positions where ``keep`` (a padded partial batch)."""
    logits = functional_call(model, layout.unflatten(flat), (x,))
    per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
    return (per_sample * keep).sum() / keep.sum().clamp_min(1)


def _update(
    theta: Tensor, buf: Tensor, g: Tensor, start: Tensor, recipe: TrainingRecipe
) -> tuple[Tensor, Tensor]:
    """Weight decay and the proximal term, then one SGD step with momentum."""
    if recipe.weight_decay:
        g = g + recipe.weight_decay * theta
    if recipe.prox_mu:
        g = g + recipe.prox_mu * (theta - start)
    buf = recipe.momentum * buf + g if recipe.momentum else g
    return theta - recipe.lr * buf, buf


def train_stacked(
    model: nn.Module,
    init: Tensor,
    inputs: Tensor,
    labels: Tensor,
    batches: Tensor,
    recipe: TrainingRecipe,
) -> Tensor:
    """Train ``K`` models together: ``init (K, d)``, data ``(N, ...)``, ``batches (steps, K, B)``
    (``-1``: padding of a partial batch) → final parameters ``(K, d)``. The proximal term pulls
    towards ``init``."""
    layout = ParamLayout.from_module(model)

    def loss_fn(flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return _loss(model, layout, flat, x, y)

    def masked_loss_fn(flat: Tensor, x: Tensor, y: Tensor, keep: Tensor) -> Tensor:
        return _masked_loss(model, layout, flat, x, y, keep)

    batched_grad = vmap(grad(loss_fn))
    masked_grad = vmap(grad(masked_loss_fn))
    start = init.detach()
    theta = start.clone()
    buf = torch.zeros_like(theta)
    for idx in batches:  # idx: (K, B)
        if bool((idx < 0).any()):
            safe = idx.clamp_min(0)
            keep = (idx >= 0).to(theta.dtype)
            g = masked_grad(theta, inputs[safe], labels[safe], keep)  # (K, d)
        else:
            g = batched_grad(theta, inputs[idx], labels[idx])  # (K, d)
        theta, buf = _update(theta, buf, g, start, recipe)
    return theta


def train_sequential(
    model: nn.Module,
    init: Tensor,
    inputs: Tensor,
    labels: Tensor,
    batches: Tensor,
    recipe: TrainingRecipe,
) -> Tensor:
    """One-by-one reference for :func:`train_stacked` (same batches, plain autograd)."""
    layout = ParamLayout.from_module(model)
    out = []
    for k in range(init.shape[0]):
        start = init[k].detach()
        theta = start.clone()
        buf = torch.zeros_like(theta)
        for idx in batches[:, k]:  # (B,)
            idx = idx[idx >= 0]
            theta.requires_grad_(True)
            (g,) = torch.autograd.grad(_loss(model, layout, theta, inputs[idx], labels[idx]), theta)
            theta, buf = _update(theta.detach(), buf, g, start, recipe)
        out.append(theta)
    return torch.stack(out)


def stacked_logits(model: nn.Module, params: Tensor, inputs: Tensor) -> Tensor:
    """Logits of ``K`` models on the same inputs: ``(K, d) × (N, ...) → (K, N, C)``, computed
    on slices of the inputs (:func:`fedguard.models.flat.logits_in_slices`)."""
    layout = ParamLayout.from_module(model)

    def logits_fn(flat: Tensor, x: Tensor) -> Tensor:
        return functional_call(model, layout.unflatten(flat), (x,))

    with torch.no_grad():
        parts = [logits for _, logits in logits_in_slices(logits_fn, params, inputs)]
        if not parts:  # no inputs: (K, 0, C) from one empty pass
            parts = [vmap(logits_fn, in_dims=(0, None))(params, inputs)]
    return torch.cat(parts, dim=1)


__all__ = [
    "TrainingRecipe",
    "draw_batches",
    "init_stacked",
    "member_indices",
    "random_subsets",
    "stacked_logits",
    "train_sequential",
    "train_stacked",
]
