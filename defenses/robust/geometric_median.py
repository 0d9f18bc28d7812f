"""Geometric median by the smoothed Weiszfeld algorithm (RFA)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import row_norms


def smoothed_weiszfeld(
    points: Tensor,
    alphas: Tensor,
    smoothing: float,
    tolerance: float,
    max_iterations: int,
) -> tuple[Tensor, Tensor, int]:
    """Smoothed Weiszfeld iterations for ``argmin_z Σ α_i max(‖x_i − z‖, ν)``.

    Starts at the weighted mean and iterates
    ``z ← Σ β_i x_i / Σ β_i`` with ``β_i = α_i / max(‖x_i − z‖, ν)`` until the objective improves
    by at most ``tolerance`` × objective (RFA's stopping rule) or ``max_iterations`` is reached.

    Parameters
    ----------
    points : Tensor
        ``(n, d)``.
    alphas : Tensor
        ``(n,)`` non-negative weights summing to one.

    Returns
    -------
    tuple[Tensor, Tensor, int]
        The ``(d,)`` median, the ``(n,)`` normalized Weiszfeld weights of the last step, and the
        number of iterations done.
    """
    x = points.to(torch.float64)  # (n, d)
    a = alphas.to(torch.float64)  # (n,)
    z = a @ x  # (d,)
    dist = row_norms(x - z[None, :]).clamp_min(smoothing)  # (n,)
    objective = float((a * dist).sum())
    beta = a / dist
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - count is returned
        beta = a / dist  # (n,)
        z = (beta @ x) / beta.sum()
        dist = row_norms(x - z[None, :]).clamp_min(smoothing)
        new_objective = float((a * dist).sum())
        converged = abs(objective - new_objective) <= tolerance * new_objective
        objective = new_objective
        if converged:
            break
    return z.to(points.dtype), beta / beta.sum(), iterations


@dataclass(frozen=True)
class GeometricMedian(RobustAggregator):
    """Geometric median of the updates (robust federated aggregation, RFA).

    Smoothed Weiszfeld: ``z ← Σ α_i x_i / max(‖x_i − z‖, ν) ÷ Σ α_i / max(‖x_i − z‖, ν)``, with
    ``α_i`` the client weights (uniform when none), started at the weighted mean and iterated until
    the objective's relative improvement is at most ``tolerance`` (not a fixed number of steps).
    ``weights`` are the final Weiszfeld weights; ``scores`` the distance to the median.
    Breakdown point 1/2; no ``n_byzantine`` parameter.

    Parameters
    ----------
    smoothing : float
        ν > 0, the distance floor that keeps the iteration defined at a data point.
    tolerance : float
        Relative objective improvement below which the iteration stops.
    max_iterations : int
        Upper bound on Weiszfeld steps.

    References
    ----------
    Pillutla, Kakade, Harchaoui. "Robust Aggregation for Federated Learning." IEEE Trans. Signal
    Processing 70, 2022.
    """

    smoothing: float = 1e-6
    tolerance: float = 1e-6
    max_iterations: int = 100

    def __post_init__(self) -> None:
        require(self.smoothing > 0, "smoothing", "a positive number")
        require(self.tolerance > 0, "tolerance", "a positive number")
        require(self.max_iterations >= 1, "max_iterations", "an integer >= 1")

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        if weights is None or not bool(weights.sum() > 0):
            alphas = torch.full((n,), 1.0 / n, dtype=torch.float64)
        else:
            alphas = weights.to(torch.float64) / weights.sum()
        z, beta, _ = smoothed_weiszfeld(
            updates, alphas, self.smoothing, self.tolerance, self.max_iterations
        )
        return RuleOutput(aggregate=z, weights=beta)
