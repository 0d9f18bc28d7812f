"""Comparative gradient elimination (CGE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound, RobustAggregator, RuleOutput
from .kernels import row_norms, weighted_mean, weights_without


@dataclass(frozen=True)
class CGE(LinearByzantineBound, RobustAggregator):
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

    byzantine_factor = 2
    min_clients_at_0 = 1
    cohort_bound = "n > 2f"

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        norms = row_norms(updates)  # (n,)
        order = torch.argsort(norms, stable=True)
        dropped = order[n - n_byzantine :]
        eff = weights_without(n, dropped, weights)
        return RuleOutput(
            aggregate=weighted_mean(updates, eff),
            weights=eff,
            scores=norms,
            flagged=tuple(sorted(int(i) for i in dropped)),
        )
