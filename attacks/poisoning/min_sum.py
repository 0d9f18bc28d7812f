"""Min-Sum (AGR-agnostic) model poisoning."""

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


def min_sum_gamma(honest: Tensor, direction: Tensor, gamma_init: float, tolerance: float) -> float:
    """Largest γ (halving search) with ``Σ_i ‖μ − γ∇p − x_i‖² ≤ min_i Σ_j ‖x_i − x_j‖²``."""
    bound = float(pairwise_sq_distances(honest.double()).sum(dim=1).min())
    distances = deviation_sq_distances(honest, direction)
    return halving_search(lambda g: float(distances(g).sum()) <= bound, gamma_init, tolerance)


@dataclass(frozen=True)
class MinSum(ModelAttack):
    """Min-Sum: ``μ − γ∇p`` whose summed squared distance to the honest updates stays within theirs.

    Bound (the paper's, and the authors' code): ``Σ_i ‖∇m − ∇_i‖² ≤ min_i Σ_j ‖∇_i − ∇_j‖²`` —
    the *min* over honest updates of their summed squared distances (some re-implementations use
    the max, a weaker attacker constraint). γ by the authors' halving search from ``gamma_init``,
    returning the last feasible γ. All malicious clients send the same vector.

    Parameters
    ----------
    perturbation : str
        ∇p: ``"unit_vec"``, ``"sign"`` or ``"std"``.
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
        x = check_honest(honest, "min_sum")
        p = perturbation(x, self.perturbation)
        gamma = min_sum_gamma(x, p, self.gamma_init, self.tolerance)
        return repeat_rows(x.mean(dim=0) - gamma * p, ctx.n_malicious)
