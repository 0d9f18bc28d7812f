"""Static norm clipping as a pre-aggregation step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .kernels import clip_rows
from .mixing import MixingPreAggregator


@dataclass(frozen=True)
class Clipping(MixingPreAggregator):
    """Scale every update to norm at most ``clip_norm`` before the aggregator.

    Parameters
    ----------
    clip_norm : float
        C > 0.

    References
    ----------
    Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization." ICML 2021
    (clipping as a robustness step); Sun et al. "Can You Really Backdoor Federated Learning?" 2019.
    """

    clip_norm: float = 1.0
    row_preserving = True

    def __post_init__(self) -> None:
        require(self.clip_norm > 0, "clip_norm", "a positive number")

    def _mix(self, updates: Tensor, n_byzantine: int, ctx: AggregationContext) -> Tensor:
        _, factors = clip_rows(updates, self.clip_norm)
        return torch.diag(factors.to(torch.float64))
