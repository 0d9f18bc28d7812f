"""Plain transport: the server receives every client's update in the clear."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import Transport, TransportOutput
from fedguard.types import RoundContext


@dataclass(frozen=True)
class PlainTransport(Transport):
    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        return TransportOutput(
            updates=updates,
            update_sum=weights.to(updates.dtype) @ updates,
            weight_sum=float(weights.sum()),
            info={"bytes_per_client": updates.shape[1] * updates.element_size()},
        )
