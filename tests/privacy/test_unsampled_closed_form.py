"""Unsampled Gaussians (q = 1) compose into one Gaussian: every accountant answers with the exact
closed form, which its numeric answer at the library's precision approaches from above.

Issue 22 item 3. Balle & Wang 2018 (exact ε of one Gaussian); Dong, Roth & Su 2022 (composition).
"""

from __future__ import annotations

import logging
import math
import warnings

import pytest

from fedguard.privacy.accountants import (
    PldAccountant,
    PrvAccountant,
    RdpAccountant,
)
from fedguard.privacy.accountants.analytic import gaussian_delta, gaussian_epsilon
from fedguard.privacy.accountants.prv import safe_half_width
from fedguard.privacy.events import Composed, Gaussian, sampled_gaussian

DELTA = 1e-5
SETTINGS = ((1.0, 1), (2.0, 10), (5.0, 100), (0.8, 3))


@pytest.mark.parametrize(("noise_multiplier", "steps"), SETTINGS)
def test_every_default_accountant_answers_with_the_closed_form(
    noise_multiplier: float, steps: int
) -> None:
    event = sampled_gaussian(1.0, noise_multiplier, steps)
    mu = math.sqrt(steps) / noise_multiplier
    exact = gaussian_epsilon(mu, DELTA)
    for accountant in (RdpAccountant(), PldAccountant(), PrvAccountant()):
        assert accountant.epsilon(event, DELTA) == pytest.approx(exact, rel=1e-12)
        assert accountant.delta(event, exact) == pytest.approx(DELTA, rel=1e-6)
        assert accountant.settings()["unsampled_gaussians"] == "closed form"
    # a heterogeneous composition of unsampled Gaussians is one Gaussian too
    mixed = Composed((Gaussian(noise_multiplier), Gaussian(2 * noise_multiplier)), count=steps)
    mixed_mu = math.sqrt(steps * (1 + 0.25)) / noise_multiplier
    assert RdpAccountant().epsilon(mixed, DELTA) == pytest.approx(
        gaussian_epsilon(mixed_mu, DELTA), rel=1e-12
    )


@pytest.mark.parametrize(("noise_multiplier", "steps"), SETTINGS)
def test_numeric_answers_approach_the_closed_form_from_above(
    noise_multiplier: float, steps: int
) -> None:
    """The library-precision answers are upper bounds within their stated discretisation error
    of the exact value; the RDP conversion is a looser upper bound."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    event = sampled_gaussian(1.0, noise_multiplier, steps)
    exact = gaussian_epsilon(math.sqrt(steps) / noise_multiplier, DELTA)
    pld = PldAccountant(value_discretization_interval=1e-4).epsilon(event, DELTA)
    assert exact * (1 - 1e-9) <= pld <= exact * (1 + 1e-3) + 1e-3
    with warnings.catch_warnings():  # Opacus' PRV warns about some grids; irrelevant here
        warnings.simplefilter("ignore")
        prv = PrvAccountant(eps_error=0.01).epsilon(event, DELTA)
    assert exact * (1 - 1e-9) <= prv <= exact + 2 * 0.01
    rdp = RdpAccountant(unsampled_closed_form=False).epsilon(event, DELTA)
    assert rdp > exact
    assert gaussian_delta(math.sqrt(steps) / noise_multiplier, exact) == pytest.approx(
        DELTA, rel=1e-8
    )


@pytest.mark.parametrize(
    ("rate", "noise_multiplier", "steps"),
    [(0.01, 0.5, 10_000), (0.1, 0.8, 1000), (0.01, 1.1, 1000), (0.001, 2.0, 10)],
)
def test_prv_safe_domain_equals_opacus(rate: float, noise_multiplier: float, steps: int) -> None:
    """The fast PRV's domain half-width (fedguard's RDP curves) is Opacus' (its own RDP)."""
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    eps_error, delta_error = 0.02, 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opacus = compute_safe_domain_size(
            [PoissonSubsampledGaussianPRV(rate, noise_multiplier)], [steps], eps_error, delta_error
        )
    ours = safe_half_width([(rate, noise_multiplier, steps)], eps_error, delta_error)
    assert ours == pytest.approx(opacus, rel=1e-9)
