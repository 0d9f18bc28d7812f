"""Min-Max (AGR-agnostic) model poisoning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .common import AgrAgnosticAttack, agr_agnostic_gamma


def min_max_gamma(honest: Tensor, direction: Tensor, gamma_init: float, tolerance: float) -> float:
    """Largest γ (by the halving search) with ``max_i ‖μ − γ∇p − x_i‖ ≤ max_{i,j} ‖x_i − x_j‖``."""
    return agr_agnostic_gamma(honest, direction, "max", gamma_init, tolerance)


@dataclass(frozen=True)
class MinMax(AgrAgnosticAttack):
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

    attack_name: ClassVar[str] = "min_max"
    reduce: ClassVar[str] = "max"
