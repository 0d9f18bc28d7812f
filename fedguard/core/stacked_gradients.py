"""Plain (non-private) gradients on the stacked plan, computed in cache-sized groups of clients.

One step of the vectorized trainer on the stacked plan (:mod:`fedguard.core.stacked_model`)
runs every layer for all k clients at once. At LeNet-5 scale on FEMNIST (100 clients × 16
images) a layer's stacked activation is 30 MB, larger than the processor's cache, so every
element-wise operation, pooling and gradient streams through main memory. (Page faults of fresh
large tensors were a small part: keeping freed memory in the heap through ``mallopt`` changed a
round by 2–7%.) A client's gradient depends only on its own parameters, samples and weights,
so the step can run for consecutive groups of clients, each group's activations small enough to
stay in cache, each writing its clients' rows of the gradient blocks. The kernels are the same,
with fewer groups per call; results agree with one group up to float rounding (test).
On a GPU all clients run at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fedguard.core.stacked_model import StackedModel, accumulate_gradients

#: bytes of one group's activations (forward values and their gradients, as the module runs
#: them): about twice a server processor's last-level cache. Measured on LeNet-5, FEMNIST shapes,
#: one thread (AMD EPYC, 32 MB L3), one step of 100 clients × 16 images: groups of 34 (this
#: budget) took 0.78× the CPU time of one group of 100, groups of 4 0.83×
#: (benchmarks/bench_client_groups.py); in whole rounds groups of 12–34 clients did equally well
CACHE_BYTES = 64 * 2**20


def clients_per_group(plan: StackedModel, k: int, batch: int, element_bytes: int) -> int:
    """Clients per group when ``k`` clients run a ``batch`` each: the fewest groups whose
    forward and backward activations fit in :data:`CACHE_BYTES`, of equal sizes (a small last
    group would cost a pass's fixed overheads for little work)."""
    per_client = 2 * batch * plan.activation_elements * element_bytes
    fits = max(1, CACHE_BYTES // max(per_client, 1))
    groups = -(-k // fits)
    return -(-k // groups)


def stacked_gradients(
    plan: StackedModel,
    params: list[Tensor],  # blocks (k, *shape)
    x: Tensor,  # (k, batch, *input)
    y: Tensor,  # (k, batch)
    weight: Tensor,  # (k, batch)
    out: list[Tensor],  # contiguous blocks (k, *shape), written in place
) -> list[Tensor]:
    """``Σ_j weight_cj ∇ℓ(θ_c; x_cj, y_cj)`` of every client c into ``out``: on a CPU in
    groups of :func:`clients_per_group` clients, elsewhere all at once (a GPU wants the largest
    kernels it can get)."""
    k, batch = x.shape[0], x.shape[1]
    size = clients_per_group(plan, k, batch, x.element_size()) if x.device.type == "cpu" else k
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
