"""Canary directions, inclusion, cosines; the Andrew et al. (2024) estimate on known Gaussians."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics.pairwise import cosine_similarity

from fedguard.audit import (
    canary_cosines,
    canary_direction,
    canary_directions,
    canary_epsilon_estimate,
    canary_included,
    canary_inclusion,
    canary_max_round_cosines,
    canary_round_cosines,
    gaussian_pair_epsilon,
    gdp_epsilon,
)
from fedguard.errors import ConfigError


def test_directions_are_unit_deterministic_and_seeded() -> None:
    a = canary_directions(50, 300, seed=1)
    assert a.shape == (50, 300) and a.dtype == torch.float32
    assert torch.allclose(torch.linalg.vector_norm(a, dim=1), torch.ones(50), atol=1e-6)
    assert torch.equal(a, canary_directions(50, 300, seed=1))
    assert not torch.equal(a, canary_directions(50, 300, seed=2))


def test_directions_are_isotropic() -> None:
    # Uniform on the sphere: E[c cᵀ] = I/d, so the mean of c_k² is 1/d for every coordinate k.
    d = 20
    dirs = canary_directions(5000, d, seed=3).double()
    second_moment = (dirs**2).mean(dim=0)  # (d,)
    assert torch.allclose(second_moment, torch.full((d,), 1 / d, dtype=torch.float64), atol=3e-3)
    assert dirs.mean(dim=0).abs().max() < 0.02


def test_inclusion_is_half_on_average_and_seeded() -> None:
    inc = canary_inclusion(4000, seed=5)
    assert inc.dtype == torch.bool
    assert stats.binomtest(int(inc.sum()), 4000, 0.5).pvalue > 0.001
    assert torch.equal(inc, canary_inclusion(4000, seed=5))


def test_cosines_match_sklearn() -> None:
    gen = torch.Generator().manual_seed(0)
    deltas = torch.randn(4, 64, generator=gen)
    dirs = canary_directions(10, 64, seed=0)
    ours = canary_round_cosines(deltas, dirs).numpy()
    ref = cosine_similarity(deltas.double().numpy(), dirs.double().numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(canary_cosines(deltas[2], dirs).numpy(), ref[2], rtol=1e-6)
    np.testing.assert_allclose(canary_max_round_cosines(deltas, dirs).numpy(), ref.max(axis=0))
    assert torch.equal(canary_cosines(torch.zeros(64), dirs), torch.zeros(10, dtype=torch.float64))


def test_null_cosines_have_variance_one_over_d() -> None:
    d = 500
    fixed = torch.randn(d, generator=torch.Generator().manual_seed(9))
    null = canary_cosines(fixed, canary_directions(4000, d, seed=10)).numpy()
    assert abs(null.mean()) < 4 / math.sqrt(d * 4000)
    assert null.var() == pytest.approx(1 / d, rel=0.08)


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_estimate_recovers_a_known_gaussian_pair(shift: float) -> None:
    rng = np.random.default_rng(0)
    d = 10000
    sd = 1 / math.sqrt(d)
    observed = rng.normal(shift * sd, sd, 5000)
    result = canary_epsilon_estimate(observed, delta=1e-5, dimension=d)
    assert result.kind == "estimate" and result.confidence is None
    assert result.epsilon == pytest.approx(gdp_epsilon(shift, 1e-5), rel=0.1)
    fitted = canary_epsilon_estimate(observed, delta=1e-5, null=rng.normal(0.0, sd, 5000))
    assert fitted.epsilon == pytest.approx(gdp_epsilon(shift, 1e-5), rel=0.1)
    assert fitted.details["null"] == "fitted"


def test_estimate_is_the_epsilon_of_the_fitted_pair() -> None:
    observed = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    null = np.array([0.0, -0.1, 0.05, 0.02])
    result = canary_epsilon_estimate(observed, delta=1e-3, null=null)
    ref = gaussian_pair_epsilon(
        1e-3, observed.mean(), observed.std(ddof=1), null.mean(), null.std(ddof=1)
    )
    assert result.epsilon == pytest.approx(ref, rel=1e-12)


def test_estimate_refuses_ambiguous_or_tiny_input() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        canary_epsilon_estimate([0.1, 0.2], delta=1e-5)
    with pytest.raises(ConfigError, match="exactly one"):
        canary_epsilon_estimate([0.1, 0.2], delta=1e-5, null=[0.0, 0.1], dimension=10)
    with pytest.raises(ConfigError, match="observed"):
        canary_epsilon_estimate([0.1], delta=1e-5, dimension=10)
    with pytest.raises(ConfigError, match="dimension"):
        canary_directions(3, 1, seed=0)


def test_each_canary_has_its_own_stream() -> None:
    many = canary_directions(30, 100, seed=4)
    assert torch.equal(many[:10], canary_directions(10, 100, seed=4))
    assert torch.equal(many[17], canary_direction(17, 100, seed=4))
    inc = canary_inclusion(30, seed=4)
    assert [canary_included(j, seed=4) for j in range(30)] == inc.tolist()
