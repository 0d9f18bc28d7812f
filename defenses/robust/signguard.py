"""SignGuard: norm filtering plus sign-statistics clustering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import MeanShift, estimate_bandwidth
from torch import Tensor

from defenses.robust.base import RobustAggregator, RuleOutput
from defenses.robust.kernels import clip_rows, row_norms
from fedguard.api import require
from fedguard.types import AggregationContext


def sign_statistics(updates: Tensor, coordinates: Tensor) -> Tensor:
    """Per row, the fractions of positive, zero and negative entries among ``coordinates``.

    Returns
    -------
    Tensor
        ``(n, 3)`` float64.
    """
    signs = torch.sign(updates[:, coordinates])  # (n, k)
    return torch.stack(
        [(signs > 0).double().mean(1), (signs == 0).double().mean(1), (signs < 0).double().mean(1)],
        dim=1,
    )


def largest_mean_shift_cluster(features: Tensor, quantile: float) -> Tensor:
    """Boolean ``(n,)`` mask of the most populous MeanShift cluster (ties → the cluster that
    scikit-learn lists first). Bandwidth from :func:`sklearn.cluster.estimate_bandwidth`; when the
    features do not spread (bandwidth 0) every row is in one cluster."""
    n = features.shape[0]
    data = features.numpy()
    if n < 2:
        return torch.ones(n, dtype=torch.bool)
    bandwidth = float(estimate_bandwidth(data, quantile=quantile))
    if not np.isfinite(bandwidth) or bandwidth <= 1e-12:
        return torch.ones(n, dtype=torch.bool)
    labels = MeanShift(bandwidth=bandwidth).fit(data).labels_
    counts = np.bincount(labels)
    return torch.from_numpy(labels == int(np.argmax(counts)))


@dataclass(frozen=True)
class SignGuard(RobustAggregator):
    """SignGuard: keep updates that pass a norm filter and fall in the main sign-statistics cluster.

    1. Norm filter: with M the median norm, keep i when ``lower_ratio ≤ ‖x_i‖/M ≤ upper_ratio``.
    2. Sign clustering: on a random ``coordinate_fraction`` of the coordinates (context generator),
       describe each update by its fractions of positive, zero and negative entries; cluster with
       MeanShift (bandwidth estimated at ``bandwidth_quantile``) and keep the largest cluster.
    3. Average the updates kept by both, each clipped to norm M (client weights ignored, as in the
       paper). Rows not kept are ``flagged``; ``scores`` are distances to the aggregate.

    Parameters
    ----------
    lower_ratio, upper_ratio : float
        Norm-ratio band (paper: 0.1 and 3.0).
    coordinate_fraction : float
        Share of coordinates used for the sign statistics (paper: 0.1).
    bandwidth_quantile : float
        Quantile passed to scikit-learn's bandwidth estimate.

    References
    ----------
    Xu, Huang, Song, Lan. "Byzantine-robust Federated Learning through Collaborative Malicious
    Gradient Filtering." ICDCS 2022 (SignGuard).
    """

    lower_ratio: float = 0.1
    upper_ratio: float = 3.0
    coordinate_fraction: float = 0.1
    bandwidth_quantile: float = 0.5

    def __post_init__(self) -> None:
        require(self.lower_ratio >= 0, "lower_ratio", "a non-negative number")
        require(self.upper_ratio > self.lower_ratio, "upper_ratio", "larger than lower_ratio")
        require(0 < self.coordinate_fraction <= 1, "coordinate_fraction", "in (0, 1]")
        require(0 < self.bandwidth_quantile <= 1, "bandwidth_quantile", "in (0, 1]")

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        norms = row_norms(updates)  # (n,)
        median_norm = torch.quantile(norms.double(), 0.5)
        if bool(median_norm > 0):
            ratio = norms.double() / median_norm
            norm_ok = (ratio >= self.lower_ratio) & (ratio <= self.upper_ratio)
        else:
            norm_ok = norms == 0
        k = max(1, round(self.coordinate_fraction * d))
        coordinates = torch.randperm(d, generator=ctx.generator)[:k]
        cluster = largest_mean_shift_cluster(
            sign_statistics(updates, coordinates), self.bandwidth_quantile
        )
        good = norm_ok & cluster
        if not bool(good.any()):
            good = norm_ok if bool(norm_ok.any()) else torch.ones(n, dtype=torch.bool)
        clipped, _ = clip_rows(updates[good], float(median_norm))
        mask = good.to(torch.float64)
        return RuleOutput(
            aggregate=clipped.mean(dim=0),
            weights=mask / mask.sum(),
            flagged=tuple(int(i) for i in (~good).nonzero().flatten()),
        )
