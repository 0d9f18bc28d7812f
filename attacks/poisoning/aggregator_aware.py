"""Aggregator-aware line search of the attack factor."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require
from fedguard.errors import ConfigError

from .common import PERTURBATIONS, check_honest, perturbation, repeat_rows


def deviation(
    aggregator: Callable[[Tensor], Tensor], honest: Tensor, direction: Tensor, gamma: float, b: int
) -> float:
    """‖agg([honest; (μ − γ∇p) × b]) − μ‖."""
    mu = honest.mean(dim=0)
    crafted = repeat_rows(mu - gamma * direction, b)
    out = aggregator(torch.cat([honest, crafted]))
    value = float(torch.linalg.vector_norm(out.double() - mu.double()))
    return value if math.isfinite(value) else -1.0


@dataclass(frozen=True)
class AggregatorAware(ModelAttack):
    """Line search of γ in ``μ − γ∇p`` maximising the aggregate's deviation from the honest mean.

    The attacker knows the server's rule (``ctx.aggregator`` simulates it on the full
    ``[honest; malicious]`` tensor). γ is searched on a geometric grid of ``n_grid`` values in
    ``[gamma_min, gamma_max]``, then refined by ``n_refine`` ternary-search steps (in log γ)
    between the best grid point's neighbours; the γ with the largest ``‖agg − μ‖`` wins. All
    malicious clients send the same vector.

    Parameters
    ----------
    perturbation : str
        ∇p: ``"unit_vec"``, ``"sign"`` or ``"std"`` (as in Min-Max).
    gamma_min, gamma_max : float
        Search range (0 < min < max).
    n_grid : int
        Grid size (≥ 2).
    n_refine : int
        Refinement steps (≥ 0).

    References
    ----------
    Shejwalkar, Houmansadr. "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning." NDSS 2021 (AGR-tailored attacks: optimise the scaling of a
    perturbation against the known rule).
    """

    perturbation: str = "unit_vec"
    gamma_min: float = 1e-2
    gamma_max: float = 1e2
    n_grid: int = 17
    n_refine: int = 8
    knows_aggregator: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(self.perturbation in PERTURBATIONS, "perturbation", "'unit_vec', 'sign' or 'std'")
        require(self.gamma_min > 0, "gamma_min", "a positive number")
        require(self.gamma_max > self.gamma_min, "gamma_max", "larger than gamma_min")
        require(self.n_grid >= 2, "n_grid", "an integer >= 2")
        require(self.n_refine >= 0, "n_refine", "a non-negative integer")

    def best_gamma(self, honest: Tensor, ctx: AttackContext) -> float:
        """The γ the search settles on."""
        if ctx.aggregator is None:
            raise ConfigError(
                "attack 'aggregator_aware' needs the server's aggregation rule "
                "(AttackContext.aggregator); the runner did not provide it."
            )
        agg = ctx.aggregator
        p = perturbation(honest, self.perturbation)
        b = ctx.n_malicious
        logs = torch.linspace(math.log(self.gamma_min), math.log(self.gamma_max), self.n_grid)
        values = [deviation(agg, honest, p, math.exp(float(t)), b) for t in logs]
        best = max(range(self.n_grid), key=lambda i: (values[i], -i))
        lo = float(logs[max(best - 1, 0)])
        hi = float(logs[min(best + 1, self.n_grid - 1)])
        best_log, best_value = float(logs[best]), values[best]
        for _ in range(self.n_refine):
            m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            v1 = deviation(agg, honest, p, math.exp(m1), b)
            v2 = deviation(agg, honest, p, math.exp(m2), b)
            for t, v in ((m1, v1), (m2, v2)):
                if v > best_value:
                    best_log, best_value = t, v
            if v1 >= v2:
                hi = m2
            else:
                lo = m1
        return math.exp(best_log)

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "aggregator_aware")
        gamma = self.best_gamma(x, ctx)
        return repeat_rows(
            x.mean(dim=0) - gamma * perturbation(x, self.perturbation), ctx.n_malicious
        )
