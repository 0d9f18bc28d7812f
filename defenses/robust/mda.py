"""Minimum-diameter averaging (MDA)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput, validate_byzantine
from .kernels import pairwise_sq_distances, weighted_mean, weights_without


def min_diameter_removal(sq_dist: Tensor, n_removed: int, chunk_size: int = 4096) -> Tensor:
    """The ``n_removed`` rows whose removal leaves the subset of smallest diameter.

    Enumerates all ``C(n, n_removed)`` removal sets in lexicographic order (ties → the first) and
    evaluates their diameters in batches of ``chunk_size`` with masked maxima over the one distance
    matrix.

    Returns
    -------
    Tensor
        ``(n_removed,)`` row indices.
    """
    n = sq_dist.shape[0]
    if n_removed == 0:
        return torch.zeros(0, dtype=torch.long)
    count = math.comb(n, n_removed)
    flat = itertools.chain.from_iterable(itertools.combinations(range(n), n_removed))
    removed = torch.from_numpy(
        np.fromiter(flat, dtype=np.int64, count=count * n_removed).reshape(count, n_removed)
    )  # (C, f)
    best_value = float("inf")
    best_index = 0
    for start in range(0, count, chunk_size):
        block = removed[start : start + chunk_size]  # (c, f)
        kept = torch.ones(block.shape[0], n, dtype=torch.bool)
        kept.scatter_(1, block, False)  # (c, n)
        both = kept[:, :, None] & kept[:, None, :]  # (c, n, n)
        diam = torch.where(both, sq_dist[None], torch.zeros((), dtype=sq_dist.dtype)).amax((1, 2))
        value, index = torch.min(diam, dim=0)
        if float(value) < best_value:
            best_value, best_index = float(value), start + int(index)
    return removed[best_index]


@dataclass(frozen=True)
class MDA(RobustAggregator):
    """Minimum-diameter averaging: mean of the n − f updates whose set has the smallest diameter.

    The diameter is the largest pairwise Euclidean distance within the subset. The search is
    exhaustive over the C(n, f) subsets (exponential), so the cohort is refused when C(n, f) exceeds
    ``max_subsets``. The kept updates are averaged with the client weights (uniform when none); the
    f removed rows are ``flagged``; ``scores`` are distances to the aggregate. Needs n > 2f.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.
    max_subsets : int
        Largest C(n, f) the rule agrees to enumerate.

    References
    ----------
    El Mhamdi, Guerraoui, Rouault. "Distributed Momentum for Byzantine-resilient Stochastic
    Gradient Descent." ICLR 2021 (MDA); El-Mhamdi, Farhadkhani, Guerraoui, Guirguis, Hoang,
    Rouault. "Collaborative Learning in the Jungle." NeurIPS 2021.
    """

    n_byzantine: int | None = None
    max_subsets: int = 1_000_000
    cohort_bound = "n > 2f and C(n, f) <= max_subsets"

    def __post_init__(self) -> None:
        validate_byzantine(self.n_byzantine)
        require(self.max_subsets >= 1, "max_subsets", "an integer >= 1")

    def min_clients(self, n_byzantine: int) -> int:
        return 2 * n_byzantine + 1

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        super().check_cohort(n_clients, n_byzantine)
        f = self.resolve_byzantine(n_byzantine)
        if math.comb(n_clients, f) > self.max_subsets:
            raise ConfigError(
                f"aggregator 'mda' would enumerate C({n_clients}, {f}) = "
                f"{math.comb(n_clients, f):.3g} subsets; max_subsets allows {self.max_subsets}."
            )

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        removed = min_diameter_removal(pairwise_sq_distances(updates), n_byzantine)
        eff = weights_without(n, removed, weights)
        return RuleOutput(
            aggregate=weighted_mean(updates, eff),
            weights=eff,
            flagged=tuple(sorted(int(i) for i in removed)),
        )
