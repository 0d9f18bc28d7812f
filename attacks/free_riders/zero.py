"""Plain free-rider."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import FreeRider, FreeRiderContext


@dataclass(frozen=True)
class ZeroFreeRider(FreeRider):
    """Return the received global model unchanged: a zero update.

    References
    ----------
    Fraboni, Vidal, Lorenzi. "Free-rider Attacks on Model Aggregation in Federated Learning."
    AISTATS 2021 (plain free-riding).
    """

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        return torch.zeros_like(ctx.global_params)
