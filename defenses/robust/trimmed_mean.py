"""Coordinate-wise trimmed mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from defenses.robust.base import RobustAggregator, RuleOutput, validate_byzantine
from defenses.robust.kernels import usage_weights
from fedguard.types import AggregationContext


@dataclass(frozen=True)
class TrimmedMean(RobustAggregator):
    """Per coordinate, drop the f largest and the f smallest values and average the rest.

    Needs n > 2f. Client weights are ignored (order statistics). ``weights`` is each client's
    share of the kept values, ``scores`` its distance to the aggregate; nobody is flagged.

    Parameters
    ----------
    n_byzantine : int | None
        f, the number of values trimmed at each end; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett. "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates." ICML 2018.
    """

    n_byzantine: int | None = None
    cohort_bound = "n > 2f"

    def __post_init__(self) -> None:
        validate_byzantine(self.n_byzantine)

    def min_clients(self, n_byzantine: int) -> int:
        return 2 * n_byzantine + 1

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        f = n_byzantine
        if f == 0:
            uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
            return RuleOutput(aggregate=updates.mean(dim=0), weights=uniform)
        ordered = torch.sort(updates, dim=0)  # values, indices: (n, d)
        kept = ordered.values[f : n - f]  # (n - 2f, d)
        return RuleOutput(
            aggregate=kept.mean(dim=0), weights=usage_weights(ordered.indices[f : n - f], n)
        )
