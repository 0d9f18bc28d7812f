"""The default PLD / PRV accountants: closed forms, a grid chosen from the target precision,
calibration by bracketing — against the library reference values (fixtures) and closed forms.

Issue 22 item 3. The libraries at their own default precision are reproduced by the fixed-grid
settings (test_pld_prv_analytic.py); here the fast defaults must stay within their stated
precision of those values.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from fedguard.privacy.accountants import (
    AnalyticGaussianAccountant,
    PldAccountant,
    PrvAccountant,
    RdpAccountant,
    UnsupportedEventError,
)
from fedguard.privacy.accountants.analytic import gaussian_epsilon
from fedguard.privacy.accountants.pld_grid import compose_gaussian_pld, pld_epsilon
from fedguard.privacy.calibrate import calibrate_noise_multiplier, clt_guess
from fedguard.privacy.events import Composed, Gaussian, Sampled, sampled_gaussian

# indices of fixture points cheap enough for every CI run (T ≤ 1000); the rest run with -m slow
FAST_POINTS = (0, 2, 4, 6, 9, 13, 15)


def _event(entry: dict[str, Any]) -> Any:
    return sampled_gaussian(entry["sampling_rate"], entry["noise_multiplier"], entry["steps"])


def _check_pld_default(entry: dict[str, Any]) -> None:
    eps = PldAccountant().epsilon(_event(entry), entry["delta"])
    if entry["sampling_rate"] == 1:  # the exact closed form, never above the library's bound
        assert eps * (1 - 1e-9) <= entry["pld_epsilon"] <= eps * (1 + 1e-3) + 1e-4, entry
    else:  # relative_precision 1e-3 is the stopping rule; measured worst 1.4e-4 on the grid
        assert eps == pytest.approx(entry["pld_epsilon"], rel=1e-3), entry
        assert eps >= entry["pld_epsilon"] * (1 - 1e-6)  # a coarser grid is more pessimistic


def _check_prv_default(entry: dict[str, Any]) -> None:
    eps = PrvAccountant().epsilon(_event(entry), entry["delta"])
    if entry["sampling_rate"] == 1:  # exact: below Opacus' bound by at most its eps_error
        exact = AnalyticGaussianAccountant().epsilon(_event(entry), entry["delta"])
        assert eps == exact
        assert eps <= entry["prv_epsilon"] <= eps + 2 * entry["prv_eps_error"], entry
    else:  # eps_error = max(0.01, 1e-3 × RDP ε): Opacus' own bound up to ~0.15 % of ε
        assert eps == pytest.approx(entry["prv_epsilon"], rel=2e-3, abs=1e-9), entry


@pytest.mark.parametrize("index", FAST_POINTS)
def test_default_pld_and_prv_match_the_library_values(oracles: dict[str, Any], index: int) -> None:
    entry = oracles["poisson"][index]
    _check_pld_default(entry)
    _check_prv_default(entry)


@pytest.mark.slow
def test_default_pld_and_prv_match_every_library_value(oracles: dict[str, Any]) -> None:
    for entry in oracles["poisson"]:
        _check_pld_default(entry)
        _check_prv_default(entry)


def test_unsampled_gaussians_are_one_gaussian() -> None:
    # issue 13's setting: dp-accounting's 1e-4 grid needs 4·10⁸ points (refused); the closed
    # form is exact: 10⁴ steps of z = 0.5 are one Gaussian of μ = √10⁴ / 0.5 = 200
    event = sampled_gaussian(1.0, 0.5, 10_000)
    exact = gaussian_epsilon(200.0, 1e-5)
    assert PldAccountant().epsilon(event, 1e-5) == exact
    assert PrvAccountant().epsilon(event, 1e-5) == exact
    assert PldAccountant().delta(event, exact) == pytest.approx(1e-5, rel=1e-6)
    with pytest.raises(UnsupportedEventError, match="grid points"):
        PldAccountant(value_discretization_interval=1e-4).epsilon(event, 1e-5)
    mixed = Composed((Gaussian(2.0), Gaussian(1.0), Gaussian(2.0)))  # μ² = 1/4 + 1 + 1/4
    assert PldAccountant().epsilon(mixed, 1e-5) == gaussian_epsilon(math.sqrt(1.5), 1e-5)


def test_mixed_events_merge_the_unsampled_steps() -> None:
    sampled = Composed((Sampled(0.01, Gaussian(1.1)),), count=200)
    mixed = Composed((sampled, Composed((Gaussian(20.0),), count=4)))  # + one Gaussian z = 10
    merged = Composed((sampled, Gaussian(10.0)))
    assert PldAccountant().epsilon(mixed, 1e-5) == PldAccountant().epsilon(merged, 1e-5)
    assert PldAccountant().epsilon(mixed, 1e-5) > PldAccountant().epsilon(sampled, 1e-5)


def test_vectorised_pld_is_dp_accountings() -> None:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    logging.getLogger("absl").setLevel(logging.ERROR)
    steps = [(0.05, 0.9, 300), (1.0, 3.0, 5), (0.5, 2.0, 3)]
    parts = []
    for q, z, n in steps:
        inner = dp_accounting.GaussianDpEvent(z)
        if q < 1:
            inner = dp_accounting.PoissonSampledDpEvent(q, inner)
        parts.append(dp_accounting.SelfComposedDpEvent(inner, n))
    library = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    library.compose(dp_accounting.ComposedDpEvent(parts))
    ours = compose_gaussian_pld(steps, 1e-3, 10**7)
    for delta in (1e-7, 1e-5, 1e-2):
        assert pld_epsilon(ours, delta) == pytest.approx(library.get_epsilon(delta), rel=1e-8)
    for epsilon in (0.5, 2.0):
        assert ours.get_delta_for_epsilon(epsilon) == pytest.approx(
            library.get_delta(epsilon), rel=1e-8
        )


def test_adaptive_grid_stops_early_where_epsilon_is_large() -> None:
    # ε ≈ 36 after 10⁴ steps: a grid of 1e-3 is within 1e-3 of dp-accounting's 1e-4 grid
    # (36.0037, measured by benchmarks/accountant_grid.py); refinement stops before 1e-4
    event = sampled_gaussian(0.1, 2.0, 10_000)
    coarse = {
        h: PldAccountant(value_discretization_interval=h).epsilon(event, 1e-5)
        for h in (10**-2.5, 1e-3)
    }
    assert PldAccountant().epsilon(event, 1e-5) in coarse.values()
    assert PldAccountant().epsilon(event, 1e-5) == pytest.approx(36.0037, rel=1e-3)


def test_prv_refuses_where_opacus_overflows() -> None:
    event = sampled_gaussian(0.1, 0.5, 10_000)  # ε ≈ 783: e^ε is beyond the largest double
    with pytest.raises(UnsupportedEventError, match="709"):
        PrvAccountant().epsilon(event, 1e-5)


class _Counting:
    """An accountant that counts its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls, self.name = inner, 0, inner.name

    def epsilon(self, event: Any, delta: float) -> float:
        self.calls += 1
        return float(self.inner.epsilon(event, delta))


def test_calibration_brackets_from_the_closed_form() -> None:
    counting = _Counting(PldAccountant())
    z = calibrate_noise_multiplier(1.0, 1e-5, 1000, 0.01, accountant=counting)
    assert counting.calls <= 6  # doubling and bisection took 13 PLD evaluations here
    pld = PldAccountant()
    assert pld.epsilon(sampled_gaussian(0.01, z, 1000), 1e-5) <= 1.0
    assert pld.epsilon(sampled_gaussian(0.01, z / (1 + 1e-3), 1000), 1e-5) > 1.0
    # unsampled: the guess is exact (μ = √T / z), so the bracket is found at once
    assert clt_guess(4.3772, 1e-5, 1, 1.0) == pytest.approx(1.0, rel=1e-4)
    rdp = _Counting(RdpAccountant())
    calibrate_noise_multiplier(2.0, 1e-5, 100, 0.05, accountant=rdp, rtol=1e-2)
    assert rdp.calls <= 8
