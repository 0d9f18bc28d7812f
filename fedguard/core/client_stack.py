"""The trainers' per-client state: stacked parameters, gradients and momentum, updated in place.

With a stacked plan (:mod:`fedguard.core.stacked_model`) each parameter of the model is its own
contiguous block ``(n, *shape)``: gradients are written straight into their blocks and every
update is an in-place operation on a prefix view (the clients still training, see
:func:`schedule_prefixes`), so a step allocates nothing of the size of the parameters — fresh
large tensors cost page faults on every step. Without a plan (the ``vmap`` path) there is one
block, the flat ``(n, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.core.stacked_model import StackedModel


@dataclass
class ClientStack:
    plan: StackedModel | None
    global_params: Tensor  # (d,)
    params: list[Tensor]  # blocks (n, *shape)
    grads: list[Tensor]  # blocks (n, *shape), overwritten every step
    buffer: list[Tensor] | None  # momentum blocks, None without momentum

    @staticmethod
    def of(plan: StackedModel | None, global_params: Tensor, n: int, momentum: bool) -> ClientStack:
        if plan is not None:
            params = plan.stacked_copies(global_params, n)
        else:
            params = [global_params.expand(n, -1).clone()]
        grads = [torch.empty_like(p) for p in params]
        buffer = [torch.zeros_like(p) for p in params] if momentum else None
        return ClientStack(plan, global_params, params, grads, buffer)

    def prefix(self, k: int) -> tuple[list[Tensor], list[Tensor]]:
        """Views of the first ``k`` clients' parameters and gradient blocks."""
        return [p[:k] for p in self.params], [g[:k] for g in self.grads]

    def split(self, flat: Tensor) -> list[Tensor]:
        """A flat ``(k, d)`` tensor as views shaped like the blocks."""
        return self.plan.blocks(flat) if self.plan is not None else [flat]

    def sgd_update(
        self, k: int, grads: list[Tensor], learning_rate: float, momentum: float, prox_mu: float
    ) -> None:
        """FedProx term ``μ(w − w₀)`` (Li et al. 2020), then SGD with PyTorch's momentum
        convention ``b ← m·b + g; w ← w − η·b`` on the first ``k`` clients, in place
        (``grads`` may be overwritten)."""
        anchors = self.split(self.global_params[None])  # (1, *shape) each
        for j, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            p = p[:k]
            if prox_mu:
                g = g.add_(p, alpha=prox_mu).sub_(anchors[j], alpha=prox_mu)
            if self.buffer is not None:
                g = self.buffer[j][:k].mul_(momentum).add_(g)
            p.add_(g, alpha=-learning_rate)

    def deltas(self, order: Tensor | None) -> Tensor:
        """``θ_c − θ_global`` of every client ``(n, d)``, back in the callers' client order."""
        self.grads, self.buffer = [], None  # free them before the flat copy
        flat = self.params[0] if self.plan is None else self.plan.join(self.params)
        self.params = []
        flat.sub_(self.global_params)
        if order is None:
            return flat
        return flat[torch.argsort(order.to(flat.device))]


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
