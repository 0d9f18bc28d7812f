"""Coordinate-wise median."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import coordinate_median_rows, usage_weights


@dataclass(frozen=True)
class Median(RobustAggregator):
    """Coordinate-wise median of the client updates.

    For an even number of rows each coordinate is the mean of its two middle values (not the lower
    middle value that ``torch.median`` returns). Client weights are ignored: one client, one value.
    ``weights`` reports, per client, the share of coordinates where its value was (one of) the
    middle value(s); the rule flags nobody, and ``scores`` is the distance to the median.
    Tolerates f < n/2 Byzantine clients; it takes no ``n_byzantine`` parameter.

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett. "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates." ICML 2018.
    """

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        values, rows = coordinate_median_rows(updates)
        return RuleOutput(aggregate=values, weights=usage_weights(rows, updates.shape[0]))
