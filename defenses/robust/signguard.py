"""SignGuard: norm filtering plus sign-statistics clustering."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import clip_rows, row_norms


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


def pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    """``(p, q)`` Euclidean distances between the rows of ``(p, k)`` and ``(q, k)`` (small k)."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1).sqrt()


def estimate_bandwidth(features: Tensor, quantile: float) -> float:
    """scikit-learn's ``estimate_bandwidth``: the mean over points of the distance to their
    ⌊n · quantile⌋-th nearest neighbour (the point itself counted as the first)."""
    n = features.shape[0]
    k = max(int(n * quantile), 1)
    dist = pairwise_distances(features, features)  # (n, n)
    return float(torch.kthvalue(dist, k, dim=1).values.mean())


def mean_shift_labels(features: Tensor, bandwidth: float, max_iter: int = 300) -> Tensor:
    """Flat-kernel mean shift seeded at every point, as scikit-learn's ``MeanShift`` does it.

    All seeds climb together (vectorized): each moves to the mean of the points within
    ``bandwidth`` until it moves by at most 1e-3 · bandwidth or ``max_iter`` is reached. Converged
    modes are ranked by (number of points in their window, mode) descending, modes within
    ``bandwidth`` of a higher-ranked one are dropped, and each point takes the label of its
    nearest remaining mode.

    Returns
    -------
    Tensor
        ``(n,)`` integer labels; 0 is the highest-ranked mode.
    """
    x = features.to(torch.float64)  # (n, k)
    n = x.shape[0]
    means = x.clone()  # (n, k): one seed per point
    counts = torch.zeros(n, dtype=torch.long)
    active = torch.ones(n, dtype=torch.bool)
    stop = 1e-3 * bandwidth
    iteration = 0
    while bool(active.any()):
        idx = active.nonzero().flatten()
        within = pairwise_distances(means[idx], x) <= bandwidth  # (a, n)
        count = within.sum(dim=1)  # seeds are data points: count >= 1
        new = (within.to(torch.float64) @ x) / count[:, None].to(torch.float64)
        shift = torch.linalg.vector_norm(new - means[idx], dim=1)
        means[idx] = new
        counts[idx] = count
        done = (shift <= stop) | (iteration == max_iter)
        active[idx[done]] = False
        iteration += 1
    intensity: dict[tuple[float, ...], int] = {}
    for mode, c in zip(means.tolist(), counts.tolist(), strict=True):
        intensity[tuple(mode)] = c
    ranked = sorted(intensity.items(), key=lambda item: (item[1], item[0]), reverse=True)
    centres = torch.tensor([mode for mode, _ in ranked], dtype=torch.float64)  # (c, k)
    close = pairwise_distances(centres, centres) <= bandwidth  # (c, c)
    unique = torch.ones(len(ranked), dtype=torch.bool)
    for i in range(len(ranked)):  # greedy suppression, highest intensity first
        if bool(unique[i]):
            unique[close[i]] = False
            unique[i] = True
    kept = centres[unique]
    return torch.argmin(pairwise_distances(x, kept), dim=1)


def largest_mean_shift_cluster(features: Tensor, quantile: float) -> Tensor:
    """Boolean ``(n,)`` mask of the most populous mean-shift cluster (ties → the higher-ranked
    mode); every row when the features do not spread (bandwidth 0)."""
    n = features.shape[0]
    if n < 2:
        return torch.ones(n, dtype=torch.bool)
    bandwidth = estimate_bandwidth(features, quantile)
    if not math.isfinite(bandwidth) or bandwidth <= 1e-12:
        return torch.ones(n, dtype=torch.bool)
    labels = mean_shift_labels(features, bandwidth)
    counts = torch.bincount(labels)
    return labels == int(torch.argmax(counts))


@dataclass(frozen=True)
class SignGuard(RobustAggregator):
    """SignGuard: keep updates that pass a norm filter and fall in the main sign-statistics cluster.

    1. Norm filter: with M the median norm, keep i when ``lower_ratio ≤ ‖x_i‖/M ≤ upper_ratio``.
    2. Sign clustering: on a random ``coordinate_fraction`` of the coordinates (context generator),
       describe each update by its fractions of positive, zero and negative entries; cluster with
       mean shift (scikit-learn's algorithm and bandwidth estimate at ``bandwidth_quantile``,
       re-implemented vectorized in torch, see :func:`mean_shift_labels`) and keep the largest
       cluster.
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
