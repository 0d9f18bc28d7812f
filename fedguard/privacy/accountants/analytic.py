"""Analytic Gaussian mechanism (Balle & Wang 2018): exact (ε, δ) without subsampling.

A composition of k Gaussian releases with multipliers z_i is exactly one Gaussian with
μ = sqrt(Σ 1/z_i²) (Dong, Roth & Su 2022, μ-GDP), whose tight privacy profile is
δ(ε) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ). Sampled events (rate < 1) are refused: the formula is
exact only for q = 1.

References
----------
Balle, Wang. "Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration
and Optimal Denoising." ICML 2018 (Theorem 8).
Dong, Roth, Su. "Gaussian Differential Privacy." JRSS-B 2022 (Corollary 2.13).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from scipy import optimize, special

from fedguard.privacy.accountants.base import Accountant
from fedguard.privacy.events import Gaussian, PrivacyEvent, Sampled, leaf_counts


def gaussian_delta(mu: float, epsilon: float) -> float:
    """Tight δ(ε) of a Gaussian mechanism with sensitivity / std = ``mu``."""
    a = special.log_ndtr(mu / 2 - epsilon / mu)
    b = epsilon + special.log_ndtr(-mu / 2 - epsilon / mu)
    if b >= a:
        return 0.0
    return float(math.exp(a) * -math.expm1(b - a))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Smallest ε with :func:`gaussian_delta` (mu, ε) ≤ δ (bisection to 1e-12)."""
    if gaussian_delta(mu, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(mu, hi) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gaussian_delta(mu, e) - delta, 0.0, hi, xtol=1e-12))


def _mu(event: PrivacyEvent) -> tuple[float, str]:
    total = 0.0
    for leaf, count in leaf_counts(event).items():
        inner = leaf
        if isinstance(leaf, Sampled):
            if leaf.rate < 1:
                return math.nan, (
                    "the analytic Gaussian mechanism is exact only without subsampling (rate 1); "
                    "use rdp, pld or prv."
                )
            inner = leaf.event
        for sub, sub_count in leaf_counts(inner).items():
            if not isinstance(sub, Gaussian):
                return math.nan, (
                    f"the analytic Gaussian accountant handles Gaussian events only (found "
                    f"{type(sub).__name__})."
                )
            total += count * sub_count / sub.noise_multiplier**2
    return math.sqrt(total), ""


def unsampled_gaussian_mu(event: PrivacyEvent) -> float | None:
    """μ = √(Σ count / z²) when ``event`` is made only of unsampled Gaussians (then it is exactly
    one Gaussian mechanism of that μ, Dong, Roth & Su 2022), else ``None``."""
    mu, reason = _mu(event)
    return None if reason else mu


@dataclass(frozen=True)
class AnalyticGaussianAccountant(Accountant):
    """Exact (ε, δ) of (compositions of) unsampled Gaussian mechanisms."""

    name: ClassVar[str] = "analytic"

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "implementation": "fedguard", "method": "Balle & Wang 2018"}

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        _, reason = _mu(event)
        return (not reason, reason)

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        return gaussian_epsilon(_mu(event)[0], delta)

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        return gaussian_delta(_mu(event)[0], epsilon)
