"""Min-Max (AGR-agnostic) model poisoning."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attacks.poisoning.common import (
    PERTURBATIONS,
    check_honest,
    deviation_sq_distances,
    halving_search,
    pairwise_sq_distances,
    perturbation,
    repeat_rows,
)
from fedguard.api import AttackContext, ModelAttack, require


def min_max_gamma(honest: Tensor, direction: Tensor, gamma_init: float, tolerance: float) -> float:
    """Largest γ (by the halving search) with ``max_i ‖μ − γ∇p − x_i‖ ≤ max_{i,j} ‖x_i − x_j‖``."""
    bound = float(pairwise_sq_distances(honest.double()).max())
    distances = deviation_sq_distances(honest, direction)
    return halving_search(lambda g: float(distances(g).max()) <= bound, gamma_init, tolerance)


@dataclass(frozen=True)
class MinMax(ModelAttack):
    """Min-Max: ``μ − γ∇p`` as far from μ as the honest updates' own spread allows.

    γ is the largest value found by the authors' halving search (start ``gamma_init``, stop when the
    step is below ``tolerance``, return the last feasible γ) such that the malicious update's
    largest distance to an honest update is at most the largest distance between two honest
    updates. All malicious clients send the same vector.

    Parameters
    ----------
    perturbation : str
        ∇p: ``"unit_vec"`` (μ/‖μ‖), ``"sign"`` (sign μ) or ``"std"`` (coordinate-wise std).
    gamma_init : float
        Starting γ (the paper's 10).
    tolerance : float
        Search precision (the paper's 1e-5).

    References
    ----------
    Shejwalkar, Houmansadr. "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning." NDSS 2021.
    """

    perturbation: str = "unit_vec"
    gamma_init: float = 10.0
    tolerance: float = 1e-5

    def __post_init__(self) -> None:
        require(self.perturbation in PERTURBATIONS, "perturbation", "'unit_vec', 'sign' or 'std'")
        require(self.gamma_init > 0, "gamma_init", "a positive number")
        require(self.tolerance > 0, "tolerance", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "min_max")
        p = perturbation(x, self.perturbation)
        gamma = min_max_gamma(x, p, self.gamma_init, self.tolerance)
        return repeat_rows(x.mean(dim=0) - gamma * p, ctx.n_malicious)
