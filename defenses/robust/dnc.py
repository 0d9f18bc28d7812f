"""Divide-and-conquer (DnC) spectral filtering."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput, validate_byzantine
from .kernels import weighted_mean


def dnc_outlier_scores(updates: Tensor, coordinates: Tensor) -> Tensor:
    """Squared projections of the centred updates, restricted to ``coordinates``, on their top
    right singular vector v.

    With the centred rows C = U S Vᵀ, ``(C v₁)_i² = s₁² u₁,i²``: the scores come from the top
    eigenpair of the ``(n, n)`` Gram matrix C Cᵀ, which is much cheaper than an SVD of C when
    n ≪ b.

    Returns
    -------
    Tensor
        ``(n,)`` outlier scores.
    """
    sub = updates[:, coordinates].to(torch.float64)  # (n, b)
    centred = sub - sub.mean(dim=0, keepdim=True)
    eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)  # ascending
    return eigenvalues[-1].clamp_min(0.0) * eigenvectors[:, -1] ** 2  # (n,)


@dataclass(frozen=True)
class DnC(RobustAggregator):
    """Divide-and-conquer: spectral outlier removal on random coordinate subsets.

    For each of ``n_iterations``: draw ``subsample_dim`` coordinates without replacement from the
    context generator, centre the updates on them, score each by its squared projection on the top
    right singular vector, keep the n − ⌊filter_fraction · f⌋ lowest scores. The good set is the
    intersection over iterations (the last iteration's set should the intersection be empty); the
    aggregate is the (client-weighted) mean of the good set. Rows outside it are ``flagged``;
    ``scores`` are the outlier scores summed over iterations and divided by their maximum.
    Needs n > filter_fraction · f.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.
    n_iterations : int
        Number of random subsets (the paper's niters).
    subsample_dim : int
        Coordinates per subset (b); the whole vector when d is smaller.
    filter_fraction : float
        c, the multiple of f removed per iteration.

    References
    ----------
    Shejwalkar, Houmansadr. "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning." NDSS 2021.
    """

    n_byzantine: int | None = None
    n_iterations: int = 5
    subsample_dim: int = 10_000
    filter_fraction: float = 1.0
    cohort_bound = "n > filter_fraction · f"

    def __post_init__(self) -> None:
        validate_byzantine(self.n_byzantine)
        require(self.n_iterations >= 1, "n_iterations", "an integer >= 1")
        require(self.subsample_dim >= 1, "subsample_dim", "an integer >= 1")
        require(self.filter_fraction > 0, "filter_fraction", "a positive number")

    def min_clients(self, n_byzantine: int) -> int:
        return int(self.filter_fraction * n_byzantine) + 1

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        n_removed = int(self.filter_fraction * n_byzantine)
        b = min(self.subsample_dim, d)
        good = torch.ones(n, dtype=torch.bool)
        total = torch.zeros(n, dtype=torch.float64)
        for _ in range(self.n_iterations):
            coordinates = torch.randperm(d, generator=ctx.generator)[:b]
            scores = dnc_outlier_scores(updates, coordinates)
            total += scores
            kept = torch.zeros(n, dtype=torch.bool)
            kept[torch.argsort(scores, stable=True)[: n - n_removed]] = True
            good &= kept
        if not bool(good.any()):  # disjoint kept sets (tiny n): keep the last iteration's set
            good = kept
        w = torch.ones(n, dtype=torch.float64) if weights is None else weights.to(torch.float64)
        mask = good.to(torch.float64)
        eff = w * mask
        eff = eff / eff.sum() if bool(eff.sum() > 0) else mask / mask.sum()
        peak = total.max()
        return RuleOutput(
            aggregate=weighted_mean(updates, eff),
            weights=eff,
            scores=total / peak if bool(peak > 0) else total,
            flagged=tuple(int(i) for i in (~good).nonzero().flatten()),
        )
