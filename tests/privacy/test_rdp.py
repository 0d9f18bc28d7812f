"""RDP accountant against Opacus, dp-accounting, numerical integration and ALGORITHMS.md."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as dpa_rdp
from opacus.accountants.analysis import rdp as opacus_rdp
from scipy import integrate

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import DEFAULT_ORDERS, RdpAccountant, UnsupportedEventError
from fedguard.privacy.accountants.analytic import gaussian_epsilon
from fedguard.privacy.accountants.rdp import (
    rdp_poisson_gaussian,
    rdp_to_delta,
    rdp_to_epsilon,
    rdp_wor_gaussian,
)
from fedguard.privacy.events import (
    Composed,
    Gaussian,
    RandomizedQuantization,
    Sampled,
    sampled_gaussian,
)

logging.getLogger("absl").setLevel(logging.ERROR)
ORDERS = np.array(DEFAULT_ORDERS)
INTEGER = ORDERS == np.floor(ORDERS)
CASES = [(0.01, 1.1), (0.001, 0.5), (0.1, 2.0), (0.05, 5.0), (0.3, 0.8)]


def test_order_grid() -> None:
    fine = ORDERS[ORDERS < 11]
    assert fine[0] == 1.1 and fine[-1] == 10.9 and np.allclose(np.diff(fine), 0.1)
    assert set(range(11, 257)) <= set(ORDERS[INTEGER].astype(int)) and ORDERS.max() >= 256
    opacus_default = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    assert set(np.round(opacus_default, 1)) <= set(np.round(ORDERS, 1))


@pytest.mark.parametrize(("q", "z"), CASES)
def test_poisson_per_order_equals_opacus_and_dp_accounting(q: float, z: float) -> None:
    mine = rdp_poisson_gaussian(q, z, ORDERS)
    opacus = np.array(opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=list(ORDERS)))
    np.testing.assert_allclose(mine, opacus, rtol=1e-6)
    dpa = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(q, z, ORDERS[INTEGER])
    np.testing.assert_allclose(mine[INTEGER], dpa, rtol=1e-6)
    # Fractional orders: dp-accounting sums |binom(α, i)| (an upper bound); the paper's series
    # (and Opacus) keep the signs. Ours is never above dp-accounting's.
    dpa_frac = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(q, z, ORDERS[~INTEGER])
    finite = np.isfinite(dpa_frac)
    assert np.all(mine[~INTEGER][finite] <= dpa_frac[finite] * (1 + 1e-9))


def _rdp_by_integration(q: float, z: float, alpha: float) -> float:
    """log A_α / (α − 1), A_α = E_{x~N(0, z²)}[((1 − q) + q·exp((2x − 1)/(2z²)))^α]."""

    def integrand(x: float) -> float:
        ratio = (1 - q) + q * math.exp((2 * x - 1) / (2 * z**2))
        return math.exp(-(x**2) / (2 * z**2) + alpha * math.log(ratio)) / (
            z * math.sqrt(2 * math.pi)
        )

    value, _ = integrate.quad(
        integrand, -40 * z, 40 * z, points=[0.0, 0.5], limit=400, epsabs=0, epsrel=1e-12
    )
    return math.log(value) / (alpha - 1)


@pytest.mark.parametrize(
    ("q", "z", "alpha"), [(0.01, 1.1, 2.5), (0.01, 0.5, 3.3), (0.1, 2.0, 7.7), (0.3, 0.8, 1.5)]
)
def test_fractional_orders_equal_the_exact_integral(q: float, z: float, alpha: float) -> None:
    """The paper wins: Mironov et al. 2019 define A_α as this integral; the signed series is it."""
    assert rdp_poisson_gaussian(q, z, [alpha])[0] == pytest.approx(
        _rdp_by_integration(q, z, alpha), rel=1e-6
    )


def test_dp_accounting_fractional_series_is_looser_somewhere() -> None:
    mine = rdp_poisson_gaussian(0.01, 0.5, ORDERS[~INTEGER])
    dpa = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(0.01, 0.5, ORDERS[~INTEGER])
    assert np.max(dpa / mine - 1) > 1e-4


def test_without_replacement_per_order_equals_dp_accounting(oracles: dict[str, Any]) -> None:
    assert oracles["orders"] == list(DEFAULT_ORDERS)
    for entry in oracles["without_replacement"]:
        q, z = entry["sampling_rate"], entry["noise_multiplier"]
        np.testing.assert_allclose(
            rdp_wor_gaussian(q, z, ORDERS), entry["per_order_rdp"], rtol=1e-6
        )
        event = sampled_gaussian(
            q, z, entry["steps"], scheme="fixed", population=entry["population"]
        )
        assert RdpAccountant().epsilon(event, entry["delta"]) == pytest.approx(
            entry["dp_accounting_epsilon"], rel=1e-6
        )


def test_without_replacement_live_spot_check() -> None:
    orders = [2.0, 3.5, 17.0, 300.0]
    np.testing.assert_allclose(
        rdp_wor_gaussian(0.05, 1.3, orders),
        dpa_rdp._compute_rdp_sample_wor_gaussian(0.05, 1.3, orders),
        rtol=1e-6,
    )


def test_reference_figures_from_algorithms_md() -> None:
    acc = RdpAccountant()
    assert acc.epsilon(sampled_gaussian(0.01, 1.1, 1000), 1e-5) == pytest.approx(1.7118, abs=5e-5)
    assert acc.epsilon(sampled_gaussian(0.01, 1.0, 10_000), 1e-5) == pytest.approx(6.71, abs=5e-3)
    fixed = sampled_gaussian(0.01, 1.0, 10_000, scheme="fixed", population=100_000)
    assert acc.epsilon(fixed, 1e-5) == pytest.approx(13.15, abs=5e-3)


def test_rdp_epsilon_between_pld_and_opacus(oracles: dict[str, Any]) -> None:
    conversion, default = RdpAccountant(unsampled_closed_form=False), RdpAccountant()
    for entry in oracles["poisson"]:
        event = sampled_gaussian(entry["sampling_rate"], entry["noise_multiplier"], entry["steps"])
        eps = conversion.epsilon(event, entry["delta"])
        assert eps <= entry["opacus_rdp_epsilon"] * (1 + 1e-9), entry
        assert eps >= entry["pld_epsilon"], entry
        assert eps <= entry["dp_accounting_rdp_epsilon"] * (1 + 1e-9), entry
        exact = default.epsilon(event, entry["delta"])
        if entry["sampling_rate"] == 1:  # one Gaussian: the exact ε, below PLD's pessimistic grid
            mu = math.sqrt(entry["steps"]) / entry["noise_multiplier"]
            assert exact == pytest.approx(gaussian_epsilon(mu, entry["delta"]), rel=1e-12)
            assert exact <= entry["pld_epsilon"] * (1 + 1e-9) <= eps * (1 + 1e-9), entry
        else:
            assert exact == eps


def test_conversion_matches_dp_accounting_and_inverts() -> None:
    rdp = 1000 * rdp_poisson_gaussian(0.01, 1.1, ORDERS)
    eps, order = rdp_to_epsilon(ORDERS, rdp, 1e-5)
    ref_eps, ref_order = dpa_rdp.compute_epsilon(ORDERS, rdp, 1e-5)
    assert (eps, order) == (pytest.approx(ref_eps, rel=1e-12), ref_order)
    delta, _ = rdp_to_delta(ORDERS, rdp, eps)
    assert delta == pytest.approx(1e-5, rel=1e-6)
    assert rdp_to_delta(ORDERS, rdp, 1.0)[0] == pytest.approx(
        dpa_rdp.compute_delta(ORDERS, rdp, 1.0)[0], rel=1e-12
    )


def test_delta_of_epsilon_is_consistent() -> None:
    acc, event = RdpAccountant(), sampled_gaussian(0.02, 0.9, 500)
    eps = acc.epsilon(event, 1e-6)
    assert acc.delta(event, eps) == pytest.approx(1e-6, rel=1e-4)
    assert acc.delta(event, eps * 1.1) < 1e-6 < acc.delta(event, eps * 0.9)


def test_composition_adds_rdp_and_gaussians_on_one_sample_merge() -> None:
    acc = RdpAccountant()
    single = Sampled(0.01, Gaussian(1.0))
    np.testing.assert_allclose(acc.rdp(Composed((single,), count=10)), 10 * acc.rdp(single))
    merged = Sampled(0.01, Composed((Gaussian(1.0), Gaussian(1.0))))
    np.testing.assert_allclose(acc.rdp(merged), rdp_poisson_gaussian(0.01, 2**-0.5, ORDERS))
    np.testing.assert_allclose(acc.rdp(Gaussian(2.0)), ORDERS / 8.0)


def test_bad_inputs_and_unsupported_events() -> None:
    acc, event = RdpAccountant(), sampled_gaussian(0.01, 1.0, 10)
    for delta in (0.0, 1.0, 1.5, -1e-5):
        with pytest.raises(ConfigError, match="delta"):
            acc.epsilon(event, delta)
    with pytest.raises(ConfigError, match="epsilon"):
        acc.delta(event, -1.0)
    mixed = Composed((Sampled(0.1, Gaussian(1.0)), Sampled(0.1, Gaussian(1.0), scheme="fixed")))
    ok, reason = acc.supports(mixed)
    assert not ok and "add/remove" in reason
    with pytest.raises(UnsupportedEventError, match="mixes"):
        acc.epsilon(mixed, 1e-5)
    sampled_rqm = Sampled(0.1, RandomizedQuantization(1.0, 0.5, 4, 0.5))
    assert not acc.supports(sampled_rqm)[0]
    with pytest.raises(ConfigError, match="orders"):
        RdpAccountant(orders=(0.5, 2.0))
