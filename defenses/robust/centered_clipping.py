"""Centered clipping."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import clip_rows

CENTRE_KEY = "centre"


def centered_clipping(
    updates: Tensor, alphas: Tensor, centre: Tensor, clip_radius: float, n_iterations: int
) -> tuple[Tensor, Tensor]:
    """``v ← v + Σ α_i (x_i − v)·min(1, τ/‖x_i − v‖)``, ``n_iterations`` times from ``centre``.

    Parameters
    ----------
    updates : Tensor
        ``(n, d)``.
    alphas : Tensor
        ``(n,)`` weights summing to one (1/n each in the paper).
    centre : Tensor
        ``(d,)`` starting point v₀.

    Returns
    -------
    tuple[Tensor, Tensor]
        The ``(d,)`` result and the ``(n,)`` clipping factors of the last iteration.
    """
    v = centre.to(updates.dtype)  # (d,)
    factors = torch.ones(updates.shape[0], dtype=updates.dtype)
    a = alphas.to(updates.dtype)
    for _ in range(n_iterations):
        clipped, factors = clip_rows(updates - v[None, :], clip_radius)  # (n, d)
        v = v + a @ clipped
    return v, factors


@dataclass(frozen=True)
class CenteredClipping(RobustAggregator):
    """Centered clipping around the previous round's aggregate.

    v₀ = the previous round's aggregate (kept in ``AggregationResult.state["centre"]``; zero in the
    first round), then ``v_{l+1} = v_l + (1/n) Σ_i (x_i − v_l)·min(1, τ/‖x_i − v_l‖)`` for
    ``n_iterations`` steps (client weights replace 1/n when given). Designed to be paired with
    client momentum (``momentum``). ``weights`` are the last iteration's relative clipping factors,
    ``scores`` the distance to the aggregate; nobody is flagged.

    Parameters
    ----------
    clip_radius : float
        τ > 0.
    n_iterations : int
        L ≥ 1.

    References
    ----------
    Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization." ICML 2021.
    """

    clip_radius: float = 1.0
    n_iterations: int = 3

    def __post_init__(self) -> None:
        require(self.clip_radius > 0, "clip_radius", "a positive number")
        require(self.n_iterations >= 1, "n_iterations", "an integer >= 1")

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        previous = ctx.state.get(CENTRE_KEY)
        centre = torch.zeros(d, dtype=updates.dtype) if previous is None else previous
        if centre.shape != (d,) or not bool(torch.isfinite(centre).all()):
            centre = torch.zeros(d, dtype=updates.dtype)
        if weights is None or not bool(weights.sum() > 0):
            alphas = torch.full((n,), 1.0 / n, dtype=updates.dtype)
        else:
            alphas = weights.to(updates.dtype) / weights.sum()
        v, factors = centered_clipping(updates, alphas, centre, self.clip_radius, self.n_iterations)
        eff = alphas * factors
        return RuleOutput(
            aggregate=v, weights=eff / eff.sum(), state={CENTRE_KEY: v.detach().clone()}
        )
