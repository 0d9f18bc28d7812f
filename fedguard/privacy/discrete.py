"""RDP bounds of integer noise that survives modular secure aggregation.

Both bounds are in lattice units (values divided by the granularity). They are proved for
integer orders (Skellam) or stated in a form we apply at integer orders; at a fractional order
α we use the bound at ⌈α⌉, valid because Rényi divergence is non-decreasing in α (conservative).

References
----------
Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation." ICML 2021 (Proposition 14 / Theorem 1).
Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private Federated Learning."
NeurIPS 2021 (Theorem 3.5 / Corollary 3.6).
Van Erven, Harremoës. "Rényi Divergence and Kullback-Leibler Divergence." IEEE TIT 2014
(monotonicity in the order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedguard.privacy.events import DiscreteGaussian, Skellam


def ddg_tau(local_noise_stddev: float, n_clients: int) -> float:
    """τ = 10 Σ_{k=1}^{n−1} exp(−2π²σ² k/(k + 1)), the discreteness penalty of the sum of n
    discrete Gaussians N_Z(0, σ²) (Kairouz et al. 2021, Theorem 1). Zero for one client."""
    k = np.arange(1, n_clients, dtype=np.float64)
    return float(10.0 * np.exp(-2.0 * math.pi**2 * local_noise_stddev**2 * k / (k + 1)).sum())


def discrete_gaussian_rdp(event: DiscreteGaussian, orders: Sequence[float]) -> np.ndarray:
    """RDP ε(α) of the distributed discrete Gaussian (Kairouz et al. 2021, Proposition 14).

    With s = √n σ the std of the summed noise, ℓ₂ = Δ₂/s, ℓ₁ = Δ₁/s and d the dimension:
    ε(α) = min(α/2 · ℓ₂² + τd, α/2 · (ℓ₂² + 2ℓ₁τ + τ²d), α/2 · (ℓ₂ + √d τ)²).
    The τ·d term dominates unless σ ≳ 2 in lattice units.
    """
    sigma, n = event.local_noise_stddev, event.n_clients
    d = float(event.dimension)
    tau = ddg_tau(sigma, n)
    scale = math.sqrt(n) * sigma
    l2 = event.l2_sensitivity / scale
    l1 = float(event.l1_sensitivity or 0.0) / scale
    a = np.ceil(np.asarray(orders, dtype=np.float64))  # (n_orders,)
    term_1 = a / 2.0 * l2**2 + tau * d
    term_2 = a / 2.0 * (l2**2 + 2.0 * l1 * tau + tau**2 * d)
    term_3 = a / 2.0 * (l2 + math.sqrt(d) * tau) ** 2
    return np.minimum(np.minimum(term_1, term_2), term_3)


def skellam_rdp(event: Skellam, orders: Sequence[float]) -> np.ndarray:
    """RDP ε(α) of the Skellam mechanism of per-coordinate variance μ (Agarwal et al. 2021):
    ε(α) ≤ α Δ₂²/(2μ) + min(((2α − 1)Δ₂² + 6Δ₁)/(4μ²), 3Δ₁/(2μ)), integer α > 1."""
    mu = event.variance
    l2, l1 = event.l2_sensitivity, float(event.l1_sensitivity or 0.0)
    a = np.ceil(np.asarray(orders, dtype=np.float64))
    return a * l2**2 / (2.0 * mu) + np.minimum(
        ((2.0 * a - 1.0) * l2**2 + 6.0 * l1) / (4.0 * mu**2), 3.0 * l1 / (2.0 * mu)
    )


__all__ = ["ddg_tau", "discrete_gaussian_rdp", "skellam_rdp"]
