"""What an inversion attack outputs: reconstructions, per client or from an aggregate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

AGGREGATE_ID = -1  # client id of a reconstruction made from a secure-aggregation sum


@dataclass(frozen=True)
class Reconstruction:
    client_id: int  # AGGREGATE_ID when inverted from a secure-aggregation sum
    inputs: Tensor  # (B, *input_shape)
    labels: Tensor  # (B,)
    matching_loss: float
    info: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InversionOutput:
    attack: str
    reconstructions: tuple[Reconstruction, ...]
    from_aggregate: bool
    n_clients_in_aggregate: int
    data_range: tuple[float, float] | None
    image_shape: tuple[int, int, int] | None
    n_classes: int


__all__ = ["AGGREGATE_ID", "InversionOutput", "Reconstruction"]
