"""The trainers' per-client state: stacked parameters, gradients and momentum, updated in place.

The parameters are one flat ``(n, d)`` tensor, which becomes the returned deltas in place; the
model sees views of it shaped per parameter (``(n, *shape)`` blocks, :mod:`fedguard.core.stacked_model`).
Gradients are contiguous blocks written straight by the batched products, and every update is
an in-place operation on a prefix view (the clients still training, see
:func:`schedule_prefixes`), so a step allocates nothing of the size of the parameters — a
fresh large tensor costs its page faults on every step. Without a plan (the ``vmap`` path)
there is one block, the flat ``(n, d)`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.core.huge_pages import empty_huge
from fedguard.core.stacked_model import StackedModel


@dataclass
class ClientStack:
    plan: StackedModel | None
    global_params: Tensor  # (d,), or (n, d) per-client starting points in stack order
    params: Tensor  # (n, d)
    grads: list[Tensor]  # blocks (n, *shape), overwritten every step
    buffer: list[Tensor] | None  # momentum blocks, None without momentum

    @staticmethod
    def of(plan: StackedModel | None, global_params: Tensor, n: int, momentum: bool) -> ClientStack:
        # a fresh (n, d) every round (it becomes the deltas): huge pages spare its page faults
        params = empty_huge((n, global_params.shape[-1]), global_params.dtype, global_params.device)
        params.copy_(global_params.expand(n, -1))
        blocks = plan.blocks(params) if plan is not None else [params]
        grads = _gradient_workspace(blocks)
        buffer = [torch.zeros_like(g) for g in grads] if momentum else None
        return ClientStack(plan, global_params, params, grads, buffer)

    def prefix(self, k: int) -> tuple[list[Tensor], list[Tensor]]:
        """Views of the first ``k`` clients' parameter and gradient blocks."""
        return self.split(self.params[:k]), [g[:k] for g in self.grads]

    def split(self, flat: Tensor) -> list[Tensor]:
        """A flat ``(k, d)`` tensor as views shaped like the blocks."""
        return self.plan.blocks(flat) if self.plan is not None else [flat]

    def sgd_update(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        learning_rate: float,
        momentum: float,
        prox_mu: float,
    ) -> None:
        """FedProx term ``μ(w − w₀)`` (Li et al. 2020), then SGD with PyTorch's momentum
        convention ``b ← m·b + g; w ← w − η·b`` on the prefix views ``params`` (from
        :meth:`prefix`), in place (``grads`` may be overwritten)."""
        k = params[0].shape[0]
        start = self.global_params
        start = start[None] if start.dim() == 1 else start[:k]  # (1 or k, d)
        anchors = self.split(start) if prox_mu else []  # (1 or k, *shape) each
        for j, (p, g) in enumerate(zip(params, grads, strict=True)):
            if prox_mu:
                g = g.add_(p, alpha=prox_mu).sub_(anchors[j], alpha=prox_mu)
            if self.buffer is not None:
                g = self.buffer[j][:k].mul_(momentum).add_(g)
            p.add_(g, alpha=-learning_rate)

    def deltas(self, order: Tensor | None) -> Tensor:
        """``θ_c − θ_global`` of every client ``(n, d)``, back in the callers' client order."""
        self.grads, self.buffer = [], None  # free them before a reordering copy
        flat = self.params.sub_(self.global_params)
        if order is None:
            return flat
        return flat[torch.argsort(order.to(flat.device))]


#: the gradient blocks of the last round, reused while the shapes fit: a fresh buffer of the size
#: of the stacked parameters costs its page faults (zero-fill) again every round
_WORKSPACE: list[Tensor] = []


def _gradient_workspace(blocks: list[Tensor]) -> list[Tensor]:
    """Contiguous gradient blocks shaped like ``blocks`` (prefix views of a kept workspace)."""
    global _WORKSPACE
    fits = len(_WORKSPACE) == len(blocks) and all(
        w.shape[1:] == b.shape[1:]
        and w.shape[0] >= b.shape[0]
        and w.dtype == b.dtype
        and w.device == b.device
        for w, b in zip(_WORKSPACE, blocks, strict=True)
    )
    if not fits:
        _WORKSPACE = []  # free the old one first
        _WORKSPACE = [torch.empty(b.shape, dtype=b.dtype, device=b.device) for b in blocks]
    return [w[: b.shape[0]] for w, b in zip(_WORKSPACE, blocks, strict=True)]


def schedule_prefixes(steps: Tensor) -> tuple[Tensor | None, list[int]]:
    """Clients by decreasing step count (None when already so) and how many train at each step.

    In that order the clients still training at step s are the first ``active[s]``: a step works
    on a prefix view, and no client takes padding steps.
    """
    order = torch.argsort(steps, descending=True, stable=True)
    ordered = steps[order]
    total = int(ordered[0]) if len(ordered) else 0
    active = (ordered[None, :] > torch.arange(total)[:, None]).sum(dim=1).tolist()  # (steps,)
    if bool((order == torch.arange(len(order))).all()):
        return None, active
    return order, active


__all__ = ["ClientStack", "schedule_prefixes"]
