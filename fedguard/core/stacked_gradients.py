"""Plain (non-private) gradients on the stacked plan, computed in cache-sized groups of clients.

One step of the vectorized trainer on the stacked plan (:mod:`fedguard.core.stacked_model`)
runs every layer for all k clients at once. At LeNet-5 scale on FEMNIST (100 clients × 16
images) a layer's stacked activation is 30 MB: larger than the processor's cache, and larger
than the C allocator's threshold for serving a block from fresh pages, so every element-wise
operation, pooling and gradient streams through main memory and each fresh tensor pays its
page faults again. The step's gradients are a sum over clients of independent terms (each
client's own parameters, samples and loss), so they can be computed for consecutive groups of
clients, each group's activations small enough to stay in cache, and written into the
matching rows of the gradient blocks. The result is the same up to float rounding of the
kernels (the same kernels, with fewer groups per call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fedguard.core.stacked_model import StackedModel, accumulate_gradients

#: bytes of one group's activations (its forward values and their gradients): about the share
#: of a server processor's last-level cache one core can keep (measured on LeNet-5, one thread:
#: groups of 10–25 clients × 16 images were 1.3× faster than all 100 at once, 5 slower again)
CACHE_BYTES = 8 * 2**20


def clients_per_group(plan: StackedModel, batch: int, element_bytes: int) -> int:
    """Clients whose forward and backward activations of a ``batch`` fit in :data:`CACHE_BYTES`."""
    per_client = 2 * batch * plan.activation_elements * element_bytes
    return max(1, CACHE_BYTES // max(per_client, 1))


def stacked_gradients(
    plan: StackedModel,
    params: list[Tensor],  # blocks (k, *shape)
    x: Tensor,  # (k, batch, *input)
    y: Tensor,  # (k, batch)
    weight: Tensor,  # (k, batch)
    out: list[Tensor],  # contiguous blocks (k, *shape), written in place
) -> list[Tensor]:
    """``Σ_j weight_cj ∇ℓ(θ_c; x_cj, y_cj)`` of every client c into ``out``, in groups of
    :func:`clients_per_group` clients."""
    k, batch = x.shape[0], x.shape[1]
    size = clients_per_group(plan, batch, x.element_size())
    for start in range(0, k, size):
        rows = slice(start, min(start + size, k))
        _gradients(
            plan, [p[rows] for p in params], x[rows], y[rows], weight[rows], [o[rows] for o in out]
        )
    return out


def _gradients(
    plan: StackedModel,
    params: list[Tensor],
    x: Tensor,
    y: Tensor,
    weight: Tensor,
    out: list[Tensor],
) -> None:
    k, batch = x.shape[0], x.shape[1]
    logits, traces = plan.forward(params, x, trace=True)
    losses = F.cross_entropy(logits.reshape(k * batch, -1), y.reshape(-1), reduction="none")
    loss = (losses.view(k, batch) * weight).sum()
    grads = torch.autograd.grad(loss, [t.outputs for t in traces])
    accumulate_gradients(traces, grads, None, out)


__all__ = ["CACHE_BYTES", "clients_per_group", "stacked_gradients"]
