"""Pure tensor kernels shared by the robust aggregators and pre-aggregators.

Every function here is stateless and deterministic; randomness, where a rule needs it, is drawn by
the rule from the generator in its context.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """Squared Euclidean distances between all rows, from one Gram matrix.

    Rows are centred first (distances are translation invariant) so that the ``‖a‖² + ‖b‖² − 2a·b``
    form does not lose precision when the updates share a large common component.

    Parameters
    ----------
    x : Tensor
        ``(n, d)`` rows.

    Returns
    -------
    Tensor
        ``(n, n)`` symmetric, non-negative, zero diagonal.
    """
    xc = x - x.mean(dim=0, keepdim=True)  # (n, d)
    gram = xc @ xc.T  # (n, n)
    sq = gram.diagonal()  # (n,)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0)  # (n, n)
    d2 = 0.5 * (d2 + d2.T)
    d2.fill_diagonal_(0.0)
    return d2


def krum_scores(sq_dist: Tensor, n_neighbours: int) -> Tensor:
    """Krum score of each row: sum of squared distances to its ``n_neighbours`` nearest others.

    Parameters
    ----------
    sq_dist : Tensor
        ``(n, n)`` squared distances with zero diagonal.
    n_neighbours : int
        How many nearest *other* rows enter the sum (Blanchard et al. use ``n − f − 2``).

    Returns
    -------
    Tensor
        ``(n,)`` scores (lower = more central).
    """
    n = sq_dist.shape[0]
    if n_neighbours <= 0:
        return torch.zeros(n, dtype=sq_dist.dtype, device=sq_dist.device)
    others = sq_dist.clone()
    others.fill_diagonal_(float("inf"))  # exclude the row itself
    nearest = torch.topk(others, k=n_neighbours, dim=1, largest=False).values  # (n, k)
    return nearest.sum(dim=1)


def row_norms(x: Tensor) -> Tensor:
    """``(n,)`` Euclidean norm of every row of ``(n, d)``."""
    return torch.linalg.vector_norm(x, dim=1)


def clip_rows(x: Tensor, clip_norm: float | Tensor) -> tuple[Tensor, Tensor]:
    """Scale each row to norm at most ``clip_norm``.

    Returns
    -------
    tuple[Tensor, Tensor]
        The ``(n, d)`` clipped rows and the ``(n,)`` factors ``min(1, clip_norm / ‖x_i‖)``
        (1 for zero rows).
    """
    norms = row_norms(x)  # (n,)
    factors = torch.where(
        norms > clip_norm, clip_norm / norms.clamp_min(torch.finfo(x.dtype).tiny), 1.0
    ).to(x.dtype)  # (n,)
    return x * factors[:, None], factors


def usage_weights(selected_rows: Tensor, n: int) -> Tensor:
    """Share of each row among the values a coordinate-wise rule averaged.

    Parameters
    ----------
    selected_rows : Tensor
        ``(k, d)`` integer row indices: per coordinate, the ``k`` rows whose values were averaged.
    n : int
        Number of rows.

    Returns
    -------
    Tensor
        ``(n,)`` float64 weights summing to one: row ``i``'s effective weight in the aggregate,
        averaged over coordinates.
    """
    counts = torch.bincount(selected_rows.reshape(-1), minlength=n).to(torch.float64)  # (n,)
    return counts / max(selected_rows.numel(), 1)


def coordinate_median_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinate-wise median and the rows it was taken from.

    For an even number of rows the median is the mean of the two middle values (``torch.median``
    alone returns the lower one); the upper middle value is found as ``−median(−x)``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``(d,)`` medians and ``(1, d)`` (odd n) or ``(2, d)`` (even n) row indices.
    """
    lower = torch.median(x, dim=0)  # lower middle value and its row, (d,)
    if x.shape[0] % 2 == 1:
        return lower.values, lower.indices[None, :]
    upper = torch.median(-x, dim=0)  # −(upper middle value)
    rows = torch.stack([lower.indices, upper.indices])
    return 0.5 * (lower.values - upper.values), rows


def coordinate_median(x: Tensor) -> Tensor:
    """Coordinate-wise median; for an even number of rows the mean of the two middle values."""
    return coordinate_median_rows(x)[0]


def mean_closest_to_centre(x: Tensor, centre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per coordinate, the mean of the ``k`` values of ``x`` closest to ``centre``.

    Implemented by dropping the ``n − k`` farthest values (a top-k with small k when few are
    dropped) and averaging the rest through a mask; ties in distance are broken by ``topk``.

    Returns
    -------
    tuple[Tensor, Tensor]
        The ``(d,)`` means and the ``(n,)`` float64 share of each row among the averaged values.
    """
    n, d = x.shape
    n_drop = n - k
    if n_drop == 0:
        return x.mean(dim=0), torch.full((n,), 1.0 / n, dtype=torch.float64)
    gap = (x - centre[None, :]).abs()  # (n, d)
    dropped = torch.topk(gap, k=n_drop, dim=0, largest=True).indices  # (n - k, d)
    del gap
    keep = torch.ones((n, d), dtype=torch.bool, device=x.device)
    keep.scatter_(0, dropped, False)
    means = torch.where(keep, x, torch.zeros((), dtype=x.dtype)).sum(dim=0) / k  # (d,)
    kept_counts = keep.sum(dim=1).to(torch.float64)  # (n,)
    return means, kept_counts / (k * d)


def weighted_mean(x: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of the rows of ``(n, d)``, weighted by ``(n,)`` non-negative weights when given.

    Zero total weight falls back to the plain mean.
    """
    if weights is None:
        return x.mean(dim=0)
    w = weights.to(x.dtype)
    total = w.sum()
    if not bool(total > 0):
        return x.mean(dim=0)
    return (w / total) @ x
