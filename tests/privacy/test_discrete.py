"""Distributed discrete Gaussian and Skellam RDP bounds against exact numeric divergences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from fedguard.privacy.accountants import RdpAccountant
from fedguard.privacy.discrete import ddg_tau, discrete_gaussian_rdp, skellam_rdp
from fedguard.privacy.events import Composed, DiscreteGaussian, Skellam

ORDERS = [2.0, 3.0, 5.0, 10.0]


def renyi(p: np.ndarray, shifted: np.ndarray, order: float) -> float:
    """D_α from pmfs; only outcomes where both are representable (> 1e-250) are summed, which
    drops a negligible tail and can only lower the value."""
    keep = (p > 1e-250) & (shifted > 1e-250)
    return renyi_log(np.log(p[keep]), np.log(shifted[keep]), order)


def renyi_log(logp: np.ndarray, logq: np.ndarray, order: float) -> float:
    return float(special.logsumexp(order * logp + (1 - order) * logq) / (order - 1))


def discrete_gaussian_logpmf(sigma: float, support: np.ndarray) -> np.ndarray:
    logw = -(support**2) / (2 * sigma**2)
    return logw - special.logsumexp(logw)


def discrete_gaussian_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    return np.exp(discrete_gaussian_logpmf(sigma, support))


def test_single_discrete_gaussian_is_exact() -> None:
    """n = 1: τ = 0 and the bound is α Δ²/(2σ²), the exact divergence (Canonne et al. 2020)."""
    sigma, shift = 1.3, 2
    support = np.arange(-200, 201)
    logp = discrete_gaussian_logpmf(sigma, support)
    logq = discrete_gaussian_logpmf(sigma, support - shift)
    event = DiscreteGaussian(sigma, n_clients=1, l2_sensitivity=shift, dimension=1)
    assert ddg_tau(sigma, 1) == 0.0
    bound = discrete_gaussian_rdp(event, ORDERS)
    exact = [renyi_log(logp, logq, a) for a in ORDERS]
    np.testing.assert_allclose(bound, exact, rtol=1e-9)
    np.testing.assert_allclose(bound, np.array(ORDERS) * shift**2 / (2 * sigma**2))


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.0])
def test_distributed_discrete_gaussian_bound_holds(sigma: float) -> None:
    n, shift = 3, 1
    support = np.arange(-60, 61)
    single = discrete_gaussian_pmf(sigma, support)
    total = single
    for _ in range(n - 1):
        total = np.convolve(total, single)  # sum of n independent discrete Gaussians
    shifted = np.roll(total, shift)
    event = DiscreteGaussian(sigma, n_clients=n, l2_sensitivity=shift, dimension=1)
    bound = discrete_gaussian_rdp(event, ORDERS)
    exact = np.array([renyi(total, shifted, a) for a in ORDERS])
    assert np.all(exact <= bound * (1 + 1e-9))
    if sigma >= 2.0:  # τ negligible: the bound is the continuous Gaussian's α Δ²/(2nσ²)
        np.testing.assert_allclose(bound, np.array(ORDERS) / (2 * n * sigma**2), rtol=1e-6)


def test_tau_term_dominates_at_small_local_noise() -> None:
    small = DiscreteGaussian(0.5, n_clients=100, l2_sensitivity=10.0, dimension=10_000)
    large = DiscreteGaussian(2.0, n_clients=100, l2_sensitivity=10.0 * 4, dimension=10_000)
    gaussian_part = 2.0 * 10.0**2 / (2 * 100 * 0.5**2)  # α ℓ₂²/2 at α = 2, same for both
    assert discrete_gaussian_rdp(small, [2.0])[0] > 2 * gaussian_part
    assert discrete_gaussian_rdp(large, [2.0])[0] == pytest.approx(gaussian_part, rel=1e-6)


@pytest.mark.parametrize("variance", [4.0, 50.0, 1000.0])
def test_skellam_bound_holds_and_is_tight_for_large_variance(variance: float) -> None:
    shift = 1
    support = np.arange(-int(20 * math.sqrt(variance)) - 50, int(20 * math.sqrt(variance)) + 51)
    logp = stats.skellam.logpmf(support, variance / 2, variance / 2)
    logq = stats.skellam.logpmf(support - shift, variance / 2, variance / 2)
    finite = np.isfinite(logp) & np.isfinite(logq)
    event = Skellam(variance, l2_sensitivity=shift, dimension=1)
    bound = skellam_rdp(event, ORDERS)
    exact = np.array([renyi_log(logp[finite], logq[finite], a) for a in ORDERS])
    assert np.all(exact <= bound * (1 + 1e-9))
    if variance >= 1000:
        assert np.all(bound <= exact * 1.01)


def test_fractional_orders_use_the_next_integer_and_compose() -> None:
    event = Skellam(100.0, 2.0, 16)
    np.testing.assert_allclose(skellam_rdp(event, [2.5]), skellam_rdp(event, [3.0]))
    acc = RdpAccountant(orders=(2.0, 3.0, 4.5))
    np.testing.assert_allclose(
        acc.rdp(Composed((event,), count=3)), 3 * skellam_rdp(event, [2, 3, 5])
    )
    ddg = DiscreteGaussian(3.0, 10, 5.0, 64)
    assert np.isfinite(acc.epsilon(Composed((ddg, event)), 1e-5))
