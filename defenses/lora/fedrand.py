"""FedRand: each client takes only one part of each LoRA pair from the server and keeps the other
part private across rounds.

Every round, for every adapted layer, client i draws — from its own keyed stream
``ctx.round.generator("fedrand", i)`` — whether it takes that layer's A or its B from the server
(probability 1/2 each). It trains from the server's copy of the chosen part and from its *own*
last local value of the other part (the server's initial value the first time it takes part),
trains both, and sends back only the update of the part it took from the server. The private part
never leaves the client: the policy's :class:`~fedguard.api.Payload` is zero there and its mask
says so, and the server averages each coordinate over the clients that sent it. Parameters outside
any LoRA pair (none, for the ``gpt`` model's adapters) are always shared.

State (checkpointed with the run): ``{"local": {client id: (d,) tensor}}``, each client's
trained adapters after its last round; only the private coordinates are ever read back.

References
----------
Park, Kim, Kim, Lee, Hwang, "FedRand: Enhancing Privacy in Federated Learning with Randomized
LoRA Subparameter Updates", 2025 (arXiv:2503.07216).
Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import Payload, PayloadPolicy, TransformContext, require
from fedguard.errors import IncompatibleError
from fedguard.models.lora import adapter_pairs


def pair_masks(names: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(pairs, d)`` bool masks of the A and of the B coordinates of every LoRA pair of a
    layout (names and sizes in flat-vector order)."""
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for name, size in zip(names, sizes, strict=True):
        offsets[name] = (start, start + size)
        start += size
    pairs = [(a, b) for _, a, b in adapter_pairs(names) if a is not None]
    a_mask = torch.zeros(len(pairs), start, dtype=torch.bool)
    b_mask = torch.zeros(len(pairs), start, dtype=torch.bool)
    for k, (a, b) in enumerate(pairs):
        a_mask[k, slice(*offsets[a])] = True
        b_mask[k, slice(*offsets[b])] = True
    return a_mask, b_mask


def shared_mask(takes_a: Tensor, a_mask: Tensor, b_mask: Tensor) -> Tensor:
    """``(n, d)`` bool: the coordinates each client takes from (and sends to) the server.

    ``takes_a`` ``(n, pairs)``: True where the client takes the pair's A (and keeps its B)."""
    private = (~takes_a).float() @ a_mask.float() + takes_a.float() @ b_mask.float()  # (n, d)
    return private == 0


@dataclass(frozen=True)
class FedRand(PayloadPolicy):
    """FedRand's randomized A/B exchange (see the module docstring)."""

    take_a_probability: float = 0.5

    def __post_init__(self) -> None:
        require(0.0 < self.take_a_probability < 1.0, "payload.take_a_probability", "in (0, 1)")

    def check_compatible(self, spec: Any, components: Any) -> None:
        model = getattr(components, "model", None)
        if getattr(model, "adapter", None) != "lora":
            raise IncompatibleError(
                "payload 'fedrand' exchanges parts of LoRA pairs: it needs model 'gpt' with "
                "adapter 'lora' (FFA-LoRA has no trained A to keep private)."
            )

    def takes_a(self, ctx: TransformContext, pairs: int) -> Tensor:
        """``(n, pairs)`` bool: which part of each pair every client takes this round."""
        rows = []
        for cid in ctx.client_ids:
            gen = ctx.round.generator("fedrand", int(cid))
            rows.append(
                torch.rand(pairs, generator=gen, dtype=torch.float64) < self.take_a_probability
            )
        return torch.stack(rows) if rows else torch.zeros(0, pairs, dtype=torch.bool)

    def _shared(self, ctx: TransformContext) -> Tensor:
        layout = getattr(ctx, "layout", None)
        if layout is None:
            raise ValueError("payload 'fedrand' needs the parameter layout in its context.")
        a_mask, b_mask = pair_masks(tuple(layout.names), tuple(layout.sizes))
        return shared_mask(self.takes_a(ctx, a_mask.shape[0]), a_mask, b_mask)

    def receive(self, received: Tensor, ctx: TransformContext) -> Tensor:
        shared = self._shared(ctx).to(received.device)
        local: Mapping[int, Tensor] = ctx.state.get("local", {})
        starts = received.clone()
        for row, cid in enumerate(ctx.client_ids):
            own = local.get(int(cid))
            if own is not None:  # its private parts, as it left them
                starts[row] = torch.where(shared[row], received[row], own.to(received))
        return starts

    def send(self, deltas: Tensor, starts: Tensor, ctx: TransformContext) -> Payload:
        shared = self._shared(ctx).to(deltas.device)
        local = dict(ctx.state.get("local", {}))
        trained = (starts + deltas).detach()
        for row, cid in enumerate(ctx.client_ids):
            local[int(cid)] = trained[row].clone()
        values = torch.where(shared, deltas, torch.zeros((), dtype=deltas.dtype))
        return Payload(values, shared, {"local": local})


__all__ = ["FedRand", "pair_masks", "shared_mask"]
