"""PSO-Fed partial sharing as a client transform."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import ClientTransform, TransformContext, TransformOutput, require


def sharing_mask(d: int, n_shared: int, generator: torch.Generator) -> Tensor:
    """``(d,)`` boolean mask with exactly ``n_shared`` coordinates set, uniformly at random."""
    mask = torch.zeros(d, dtype=torch.bool)
    mask[torch.randperm(d, generator=generator)[:n_shared]] = True
    return mask


@dataclass(frozen=True)
class PartialSharing(ClientTransform):
    """Each client shares only a random fraction of its update's coordinates per round.

    Client i draws, from its own stream ``ctx.round.generator("partial_sharing", i)``, a uniformly
    random set of ⌈share_fraction · d⌉ coordinates; the others are sent as 0. **Server side:** a
    zero in the update of a model delta means "keep the server's value", which is exactly PSO-Fed's
    rule — the server fills every unshared coordinate of a client's model with its own current
    global value, so that client contributes no change there. With ``rescale=True`` the shared
    coordinates are divided by the fraction, making each client's update unbiased (not in the
    paper; off by default). The masks are independent across clients and rounds, so a client's draw
    does not depend on who else was sampled.

    Parameters
    ----------
    share_fraction : float
        Share of coordinates each client sends, in (0, 1].
    rescale : bool
        Divide the shared coordinates by ``share_fraction``.

    References
    ----------
    Gogineni, Werner, Huang, Kuh. "Communication-Efficient Online Federated Learning Framework
    for Nonlinear Regression." ICASSP 2022, arXiv:2110.06556 (PSO-Fed).
    """

    share_fraction: float = 0.5
    rescale: bool = False

    def __post_init__(self) -> None:
        require(0 < self.share_fraction <= 1, "share_fraction", "in (0, 1]")

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        n, d = updates.shape
        n_shared = min(d, max(1, math.ceil(self.share_fraction * d - 1e-9)))
        masks = (
            torch.stack(
                [
                    sharing_mask(d, n_shared, ctx.round.generator("partial_sharing", int(cid)))
                    for cid in ctx.client_ids
                ]
            )
            if n > 0
            else torch.zeros((0, d), dtype=torch.bool)
        )  # (n, d)
        shared = torch.where(masks, updates, torch.zeros((), dtype=updates.dtype))
        if self.rescale:
            shared = shared / (n_shared / d)
        return TransformOutput(values=shared, state=dict(ctx.state))
