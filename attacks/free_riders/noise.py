"""Random-noise free-rider."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import FreeRider, FreeRiderContext, require


@dataclass(frozen=True)
class NoiseFreeRider(FreeRider):
    """Send ``N(0, std² I)`` noise of a fixed scale as the update.

    Parameters
    ----------
    std : float
        Standard deviation per coordinate (> 0).

    References
    ----------
    Lin, Du, Liu. "Free-riders in Federated Learning: Attacks and Defenses." arXiv:1911.12560,
    2019 (random-weight free-riding).
    """

    std: float = 1e-3

    def __post_init__(self) -> None:
        require(self.std > 0, "std", "a positive number")

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        p = ctx.global_params
        noise = torch.randn(p.shape, generator=ctx.generator, dtype=torch.float64)
        return (self.std * noise).to(p.dtype)
