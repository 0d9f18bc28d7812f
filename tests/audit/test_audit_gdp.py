"""μ-GDP conversion (Dong, Roth and Su 2022; Nasr et al. 2023) vs dp-accounting and quadrature."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from scipy import integrate, stats

from fedguard.audit import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    gdp_audit,
    gdp_delta,
    gdp_epsilon,
    gdp_mu_from_rates,
    gdp_threshold_audit,
)
from fedguard.errors import ConfigError


def test_reference_analytic_gaussian() -> None:
    # ALGORITHMS.md: q = 1, z = 1, T = 1, δ = 1e-5 → analytic Gaussian ε = 4.3772 (μ = 1/z = 1).
    assert gdp_epsilon(1.0, 1e-5) == pytest.approx(4.3772, abs=5e-5)


@pytest.mark.parametrize("noise_multiplier", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-8])
def test_matches_dp_accounting_gaussian_mechanism(noise_multiplier: float, delta: float) -> None:
    ours = gdp_epsilon(1.0 / noise_multiplier, delta)
    ref = dp_accounting.get_epsilon_gaussian(noise_multiplier, delta)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("mu", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("epsilon", [0.0, 0.5, 2.0])
def test_delta_is_the_hockey_stick_divergence(mu: float, epsilon: float) -> None:
    def integrand(x: float) -> float:
        return max(0.0, stats.norm.pdf(x, mu, 1) - math.exp(epsilon) * stats.norm.pdf(x, 0, 1))

    crossing = epsilon / mu + mu / 2  # where the density ratio equals e^ε
    ref, _ = integrate.quad(integrand, crossing, crossing + 40, limit=400, epsabs=1e-16)
    assert gdp_delta(mu, epsilon) == pytest.approx(ref, rel=1e-7, abs=1e-12)


def test_mu_from_rates_inverts_the_trade_off_curve() -> None:
    alpha = np.array([1e-4, 0.01, 0.1, 0.4])
    for mu in (0.2, 1.0, 3.0):
        beta = stats.norm.cdf(stats.norm.ppf(1 - alpha) - mu)  # FNR on the μ-GDP curve
        assert gdp_mu_from_rates(alpha, beta) == pytest.approx(np.full(4, mu), rel=1e-9)
    assert float(gdp_mu_from_rates(0.6, 0.6)) == 0.0  # worse than chance: certifies nothing


def test_audit_from_counts_uses_both_interval_ends() -> None:
    result = gdp_audit(950, 1000, 20, 1000, confidence=0.95, delta=1e-5)
    fpr_hi = float(clopper_pearson_upper(20, 1000, 0.025))
    fnr_hi = 1 - float(clopper_pearson_lower(950, 1000, 0.025))
    mu = stats.norm.isf(fpr_hi) - stats.norm.ppf(fnr_hi)
    assert result.details["mu_lower"] == pytest.approx(mu, rel=1e-12)
    assert result.epsilon == pytest.approx(gdp_epsilon(mu, 1e-5), rel=1e-12)
    assert result.kind == "lower_bound"


def test_audit_is_monotone_in_confidence_and_delta() -> None:
    by_conf = [gdp_audit(900, 1000, 30, 1000, confidence=c).epsilon for c in (0.5, 0.9, 0.99)]
    assert by_conf[0] > by_conf[1] > by_conf[2] > 0
    by_delta = [gdp_audit(900, 1000, 30, 1000, delta=d).epsilon for d in (1e-8, 1e-5, 1e-2)]
    assert by_delta[0] > by_delta[1] > by_delta[2] > 0


def test_threshold_sweep_recovers_a_known_shift_from_below() -> None:
    rng = np.random.default_rng(11)
    true_mu = 2.0
    with_canary = rng.normal(true_mu, 1.0, 2000)
    without = rng.normal(0.0, 1.0, 2000)
    result = gdp_threshold_audit(with_canary, without, delta=1e-5)
    assert 1.5 < result.details["mu_lower"] < true_mu
    assert result.epsilon < gdp_epsilon(true_mu, 1e-5)
    fixed = gdp_threshold_audit(with_canary, without, threshold=result.details["threshold"])
    assert fixed.details["mu_lower"] > result.details["mu_lower"]  # no Bonferroni for one test


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="delta"):
        gdp_epsilon(1.0, 0.0)
    with pytest.raises(ConfigError, match="mu"):
        gdp_delta(-1.0, 1.0)
    with pytest.raises(ConfigError, match="n_hypotheses"):
        gdp_audit([1, 2], 10, [0, 0], 10, n_hypotheses=1)
