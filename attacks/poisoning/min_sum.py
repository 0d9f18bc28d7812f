"""Min-Sum (AGR-agnostic) model poisoning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .common import AgrAgnosticAttack, agr_agnostic_gamma


def min_sum_gamma(honest: Tensor, direction: Tensor, gamma_init: float, tolerance: float) -> float:
    """Largest γ (halving search) with ``Σ_i ‖μ − γ∇p − x_i‖² ≤ min_i Σ_j ‖x_i − x_j‖²``."""
    return agr_agnostic_gamma(honest, direction, "sum", gamma_init, tolerance)


@dataclass(frozen=True)
class MinSum(AgrAgnosticAttack):
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

    attack_name: ClassVar[str] = "min_sum"
    reduce: ClassVar[str] = "sum"
