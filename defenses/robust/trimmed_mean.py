"""Coordinate-wise trimmed mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound, RobustAggregator, RuleOutput


@dataclass(frozen=True)
class TrimmedMean(LinearByzantineBound, RobustAggregator):
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

    byzantine_factor = 2
    min_clients_at_0 = 1
    cohort_bound = "n > 2f"

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        f = n_byzantine
        if f == 0:
            uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
            return RuleOutput(aggregate=updates.mean(dim=0), weights=uniform)
        # Two top-f selections instead of a full sort. Should ties put a row in both, the values
        # left are all equal to the tied value, so averaging whatever is kept stays exact.
        keep = torch.ones((n, d), dtype=torch.bool, device=updates.device)
        keep.scatter_(0, torch.topk(updates, k=f, dim=0, largest=True).indices, False)
        keep.scatter_(0, torch.topk(updates, k=f, dim=0, largest=False).indices, False)
        kept = keep.sum(dim=0)  # (d,), n - 2f unless ties
        total = torch.where(keep, updates, torch.zeros((), dtype=updates.dtype)).sum(dim=0)
        shares = keep.sum(dim=1).to(torch.float64)
        return RuleOutput(aggregate=total / kept.to(updates.dtype), weights=shares / shares.sum())
