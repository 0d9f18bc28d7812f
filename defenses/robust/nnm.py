"""Nearest-neighbour mixing (NNM)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound
from .kernels import pairwise_sq_distances
from .mixing import MixingPreAggregator


@dataclass(frozen=True)
class NNM(LinearByzantineBound, MixingPreAggregator):
    """Nearest-neighbour mixing: replace each update by the mean of its n − f nearest updates.

    The neighbourhood of x_i includes x_i itself (distance 0), found from one Gram-matrix distance
    computation; output ``(n, d)``. Compose with any aggregator: ``nnm+trimmed_mean``,
    ``nnm+krum``. Needs n > f.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan. "Fixing by Mixing: A Recipe for Optimal
    Byzantine ML under Heterogeneity." AISTATS 2023.
    """

    byzantine_factor = 1
    min_clients_at_0 = 1
    cohort_bound = "n > f"

    def _mix(self, updates: Tensor, n_byzantine: int, ctx: AggregationContext) -> Tensor:
        n = updates.shape[0]
        k = n - n_byzantine
        d2 = pairwise_sq_distances(updates).to(torch.float64)  # (n, n)
        d2.fill_diagonal_(-1.0)  # the row itself always comes first
        neighbours = torch.topk(d2, k=k, dim=1, largest=False).indices  # (n, k)
        mixing = torch.zeros((n, n), dtype=torch.float64)
        mixing.scatter_(1, neighbours, 1.0 / k)
        return mixing
