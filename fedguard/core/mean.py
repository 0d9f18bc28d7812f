"""Weighted mean aggregation (FedAvg), the core's default aggregator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import Aggregator
from fedguard.types import AggregationContext, AggregationResult


def weighted_mean(updates: Tensor, weights: Tensor | None) -> Tensor:
    """Σ w_i x_i / Σ w_i over rows of ``updates`` (n, d); plain mean when ``weights`` is None."""
    if weights is None:
        return updates.mean(dim=0)
    w = weights.to(updates.dtype)
    return (w @ updates) / w.sum()


def mean_from_sum(update_sum: Tensor, weights: Tensor) -> AggregationResult:
    """:class:`Mean`'s result from ``update_sum`` = ``weights @ updates`` already computed (by
    the plain transport): the same operations on the same values, so the same bits."""
    w = weights.to(update_sum.dtype)
    return AggregationResult(update_sum / w.sum(), weights=w / w.sum())


@dataclass(frozen=True)
class Mean(Aggregator):
    """FedAvg's weighted mean (McMahan et al. 2017). Not robust: one client can move it anywhere.

    References
    ----------
    McMahan et al., "Communication-efficient learning of deep networks from decentralized data",
    AISTATS 2017.
    """

    requires_individual_updates: ClassVar[bool] = False

    def __call__(
        self, updates: Tensor, weights: Tensor | None, ctx: AggregationContext
    ) -> AggregationResult:
        w = torch.ones(len(updates)) if weights is None else weights.to(updates.dtype)
        return AggregationResult(weighted_mean(updates, w), weights=w / w.sum())

    def from_sum(self, update_sum: Tensor, weight_sum: float) -> Tensor:
        return update_sum / weight_sum
