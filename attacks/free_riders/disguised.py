"""Disguised free-rider (Fraboni et al. 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import FreeRider, FreeRiderContext, require


def estimate_sigma(global_deltas: Sequence[Tensor], n_rounds: int) -> float | None:
    """σ̂: root-mean-square coordinate of the first ``n_rounds`` global deltas, or ``None``."""
    early = list(global_deltas)[:n_rounds]
    if not early:
        return None
    stacked = torch.stack([g.reshape(-1).double() for g in early])
    return float(stacked.pow(2).mean().sqrt())


@dataclass(frozen=True)
class DisguisedFreeRider(FreeRider):
    """Send pure noise at an honest-looking, decaying scale: ``N(0, (c σ̂ t^(−γ))² I)``.

    This is Fraboni et al.'s disguised free-rider (the received model plus noise, i.e. the update
    is the noise). σ̂ is estimated from the first ``estimation_rounds`` global model deltas the
    free-rider has seen (RMS coordinate); before any delta exists ``initial_std`` is used.
    ``ctx.round`` counts from 0 (the core's convention), so the decay uses t = round + 1.

    Parameters
    ----------
    noise_scale : float
        c > 0.
    decay : float
        γ ≥ 0 (the paper uses γ = 1).
    estimation_rounds : int
        How many early global deltas enter σ̂.
    initial_std : float
        σ̂ before the first global delta.

    References
    ----------
    Fraboni, Vidal, Lorenzi. "Free-rider Attacks on Model Aggregation in Federated Learning."
    AISTATS 2021.
    """

    noise_scale: float = 1.0
    decay: float = 1.0
    estimation_rounds: int = 1
    initial_std: float = 1e-3

    def __post_init__(self) -> None:
        require(self.noise_scale > 0, "noise_scale", "a positive number")
        require(self.decay >= 0, "decay", "a non-negative number")
        require(self.estimation_rounds >= 1, "estimation_rounds", "an integer >= 1")
        require(self.initial_std > 0, "initial_std", "a positive number")

    def std(self, ctx: FreeRiderContext) -> float:
        """The noise standard deviation used this round."""
        sigma = estimate_sigma(ctx.global_deltas, self.estimation_rounds)
        sigma = self.initial_std if sigma is None else sigma
        t = ctx.round + 1
        return self.noise_scale * sigma * math.pow(t, -self.decay)

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        p = ctx.global_params
        noise = torch.randn(p.shape, generator=ctx.generator, dtype=torch.float64)
        return (self.std(ctx) * noise).to(p.dtype)
