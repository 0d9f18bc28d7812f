"""Delta-replay free-rider (Lin et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import FreeRider, FreeRiderContext, require


@dataclass(frozen=True)
class DeltaReplay(FreeRider):
    """Send an earlier *global* model change as one's own update (delta-weights free-riding).

    The replayed delta is the ``lag``-th most recent one in ``ctx.global_deltas`` (``lag=1``: the
    last round's), optionally plus ``N(0, noise_std²)`` noise; a zero update while no such delta
    exists yet.

    Parameters
    ----------
    lag : int
        Which earlier global delta to replay (≥ 1).
    noise_std : float
        Extra Gaussian noise per coordinate (≥ 0).

    References
    ----------
    Lin, Du, Liu. "Free-riders in Federated Learning: Attacks and Defenses." arXiv:1911.12560,
    2019.
    """

    lag: int = 1
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        require(self.lag >= 1, "lag", "an integer >= 1")
        require(self.noise_std >= 0, "noise_std", "a non-negative number")

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        p = ctx.global_params
        deltas = list(ctx.global_deltas)
        if len(deltas) < self.lag:
            return torch.zeros_like(p)
        out = deltas[-self.lag].reshape(p.shape).to(p.dtype).clone()
        if self.noise_std > 0:
            noise = torch.randn(p.shape, generator=ctx.generator, dtype=torch.float64)
            out = out + (self.noise_std * noise).to(p.dtype)
        return out
