"""Comparative gradient elimination (CGE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from defenses.robust.base import RobustAggregator, RuleOutput, validate_byzantine
from defenses.robust.kernels import row_norms, weighted_mean
from fedguard.types import AggregationContext


@dataclass(frozen=True)
class CGE(RobustAggregator):
    """Comparative gradient elimination: drop the f updates of largest norm, average the rest.

    Convention: the paper *sums* the n − f smallest-norm gradients; we take their (client-weighted)
    mean so that the aggregate has the scale of one update and f = 0 gives the plain mean. Ties in
    norm are broken by row index. ``scores`` are the norms; the f dropped rows are ``flagged``.
    Needs n > 2f.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Gupta, Liu, Vaidya. "Byzantine Fault-Tolerant Distributed Machine Learning with Norm-Based
    Comparative Gradient Elimination." DSN Workshops 2021.
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
        norms = row_norms(updates)  # (n,)
        order = torch.argsort(norms, stable=True)
        dropped = order[n - n_byzantine :]
        mask = torch.ones(n, dtype=torch.float64)
        mask[dropped] = 0.0
        w = torch.ones(n, dtype=torch.float64) if weights is None else weights.to(torch.float64)
        eff = w * mask
        eff = eff / eff.sum() if bool(eff.sum() > 0) else mask / mask.sum()
        return RuleOutput(
            aggregate=weighted_mean(updates, eff),
            weights=eff,
            scores=norms,
            flagged=tuple(sorted(int(i) for i in dropped)),
        )
