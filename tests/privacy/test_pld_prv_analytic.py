"""PLD (dp-accounting), PRV (Opacus) and analytic Gaussian accountants."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import (
    AnalyticGaussianAccountant,
    PldAccountant,
    PrvAccountant,
    RdpAccountant,
    UnsupportedEventError,
    get_accountant,
)
from fedguard.privacy.accountants.analytic import gaussian_delta, gaussian_epsilon
from fedguard.privacy.events import (
    Composed,
    DiscreteGaussian,
    Gaussian,
    RandomizedQuantization,
    Sampled,
    Skellam,
    sampled_gaussian,
)

REFERENCE = sampled_gaussian(0.01, 1.1, 1000)  # ALGORITHMS.md: PRV 1.5255, PLD 1.5154


def test_reference_figures_live() -> None:
    assert PldAccountant().epsilon(REFERENCE, 1e-5) == pytest.approx(1.5154, abs=5e-5)
    assert PrvAccountant().epsilon(REFERENCE, 1e-5) == pytest.approx(1.5255, abs=5e-5)
    assert AnalyticGaussianAccountant().epsilon(Gaussian(1.0), 1e-5) == pytest.approx(
        4.3772, abs=5e-5
    )


def test_wrappers_reproduce_the_libraries(oracles: dict[str, Any]) -> None:
    # on the libraries' own default grids (the fast defaults are checked against these below)
    library_pld = PldAccountant(value_discretization_interval=1e-4)
    library_prv = PrvAccountant(eps_error=0.01)
    for entry in (oracles["poisson"][0], oracles["poisson"][2]):
        event = sampled_gaussian(entry["sampling_rate"], entry["noise_multiplier"], entry["steps"])
        assert library_pld.epsilon(event, entry["delta"]) == pytest.approx(
            entry["pld_epsilon"], rel=1e-9
        )
        assert library_prv.epsilon(event, entry["delta"]) == pytest.approx(
            entry["prv_epsilon"], rel=1e-9
        )


def test_prv_agrees_with_pld(oracles: dict[str, Any]) -> None:
    checked = 0
    for entry in oracles["poisson"]:
        if entry["pld_epsilon"] < 0.5:
            continue
        tolerance = max(0.01 * entry["pld_epsilon"], 2 * entry["prv_eps_error"])
        assert abs(entry["prv_epsilon"] - entry["pld_epsilon"]) <= tolerance, entry
        checked += 1
    assert checked >= 10


def test_analytic_gaussian_is_exact_and_composes() -> None:
    # Balle & Wang 2018: delta(eps) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ)
    mu, eps = 1.0, 4.3772
    expected = 0.5 * math.erfc(-(mu / 2 - eps / mu) / math.sqrt(2)) - math.exp(
        eps
    ) * 0.5 * math.erfc((mu / 2 + eps / mu) / math.sqrt(2))
    assert gaussian_delta(mu, eps) == pytest.approx(expected, rel=1e-9)
    assert gaussian_delta(mu, gaussian_epsilon(mu, 1e-5)) == pytest.approx(1e-5, rel=1e-8)
    acc = AnalyticGaussianAccountant()
    # 100 steps of z = 2 are one Gaussian with μ = sqrt(100)/2 = 5, i.e. z = 0.2
    assert acc.epsilon(Composed((Gaussian(2.0),), count=100), 1e-5) == pytest.approx(
        acc.epsilon(Gaussian(0.2), 1e-5), rel=1e-12
    )
    # tight: PLD on a fixed grid (pessimistic) is above it, but within its discretisation; the
    # RDP conversion is looser (the default RDP accountant answers with the closed form)
    for z, steps in [(1.0, 1), (5.0, 1)]:
        event = sampled_gaussian(1.0, z, steps)
        exact = acc.epsilon(event, 1e-5)
        pld = PldAccountant(value_discretization_interval=1e-4).epsilon(event, 1e-5)
        assert exact <= pld <= exact * 1.001 + 1e-3
        assert RdpAccountant(unsampled_closed_form=False).epsilon(event, 1e-5) > exact
        assert RdpAccountant().epsilon(event, 1e-5) == exact
    assert acc.delta(Gaussian(1.0), 4.3772) == pytest.approx(1e-5, rel=1e-3)


def test_delta_of_epsilon() -> None:
    eps = PldAccountant().epsilon(REFERENCE, 1e-5)
    assert PldAccountant().delta(REFERENCE, eps) == pytest.approx(1e-5, rel=0.02)
    prv_delta = PrvAccountant().delta(REFERENCE, 1.5255)
    assert 0.5e-5 < prv_delta < 2e-5


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (sampled_gaussian(0.01, 1.0, 10, scheme="fixed", population=1000), "without replacement"),
        (RandomizedQuantization(1.0, 0.5, 4, 0.5), "RandomizedQuantization"),
        (DiscreteGaussian(2.0, 10, 3.0, 10), "DiscreteGaussian"),
        (Skellam(100.0, 3.0, 10), "Skellam"),
        (Sampled(0.1, Skellam(100.0, 3.0, 10)), "Skellam"),
    ],
)
def test_unsupported_events_are_named_plainly(event, fragment: str) -> None:
    for acc in (PldAccountant(), PrvAccountant()):
        ok, reason = acc.supports(event)
        assert not ok and fragment in reason and "rdp" in reason
        with pytest.raises(UnsupportedEventError, match=acc.name.upper()):
            acc.epsilon(event, 1e-5)
    assert RdpAccountant().supports(event)[0] == (not isinstance(event, Sampled))
    ok, reason = AnalyticGaussianAccountant().supports(event)
    assert not ok and reason


def test_analytic_refuses_subsampling() -> None:
    ok, reason = AnalyticGaussianAccountant().supports(REFERENCE)
    assert not ok and "subsampling" in reason


def test_prv_memory_guard() -> None:
    with pytest.raises(UnsupportedEventError, match="grid points"):
        PrvAccountant(max_domain_points=1000).epsilon(REFERENCE, 1e-5)


def test_registry_and_settings() -> None:
    for name in ("rdp", "prv", "pld", "analytic"):
        acc = get_accountant(name)
        settings = json.loads(json.dumps(acc.settings()))
        assert settings["name"] == name == acc.name
    assert (
        get_accountant("pld", value_discretization_interval=1e-3).settings()[
            "value_discretization_interval"
        ]
        == 1e-3
    )
    assert "version" in get_accountant("prv").settings()
    with pytest.raises(ConfigError, match="accountant must be one of"):
        get_accountant("moments")
    with pytest.raises(ConfigError, match="unknown settings"):
        get_accountant("rdp", eps_error=0.1)
    with pytest.raises(ConfigError, match="eps_error"):
        PrvAccountant(eps_error=0.0)
