"""Noise sources for distributed DP: samplers against exact laws, tail bounds above exact tails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from fedguard.defenses.secure_aggregation.noise import DiscreteGaussianNoise, SkellamNoise
from fedguard.errors import ConfigError


def _chi2_against(samples: torch.Tensor, support: np.ndarray, pmf: np.ndarray) -> float:
    counts = np.array([(samples == k).sum().item() for k in support], dtype=float)
    expected = pmf / pmf.sum() * counts.sum()
    keep = expected >= 5
    return float(
        stats.chisquare(
            counts[keep], expected[keep] * counts[keep].sum() / expected[keep].sum()
        ).pvalue
    )


def test_skellam_sampler_matches_scipy() -> None:
    noise = SkellamNoise(mu=3.0)
    x = noise(torch.zeros(60_000, dtype=torch.int64), torch.Generator().manual_seed(0))
    support = np.arange(-12, 13)
    assert _chi2_against(x, support, stats.skellam.pmf(support, 3.0, 3.0)) > 1e-4
    assert noise.variance == 6.0


def test_discrete_gaussian_sampler_matches_exact_pmf() -> None:
    sigma = 2.5
    noise = DiscreteGaussianNoise(sigma=sigma)
    x = noise.sample((60_000,), torch.Generator().manual_seed(1))
    support = np.arange(-12, 13)
    assert _chi2_against(x, support, np.exp(-(support**2) / (2 * sigma**2))) > 1e-4
    assert abs(x.double().mean().item()) < 0.05


@pytest.mark.parametrize("n_clients", [1, 4, 30])
def test_skellam_tail_bound_is_above_the_exact_tail(n_clients: int) -> None:
    noise = SkellamNoise(mu=5.0)
    total = n_clients * 5.0  # a sum of Skellam(μ) is Skellam(nμ)
    for a in (5, 20, 60, 150):
        exact = 2 * stats.skellam.sf(a - 1, total, total)  # P(|S| ≥ a)
        assert noise.tail_bound(a, n_clients) >= exact
    assert noise.tail_bound(150, 1) < 1e-20


def test_discrete_gaussian_tail_bound_is_above_the_exact_tail() -> None:
    sigma, n = 2.0, 3
    ks = np.arange(-60, 61)
    pmf = np.exp(-(ks**2) / (2 * sigma**2))
    pmf /= pmf.sum()
    law = pmf
    for _ in range(n - 1):
        law = np.convolve(law, pmf)  # sum of n discrete Gaussians
    support = np.arange(-60 * n, 60 * n + 1)
    noise = DiscreteGaussianNoise(sigma=sigma)
    for a in (2, 5, 10, 20):
        exact = law[np.abs(support) >= a].sum()
        assert noise.tail_bound(a, n) >= exact
    assert math.isclose(noise.variance, sigma**2)


def test_noise_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="mu"):
        SkellamNoise(mu=0.0)
    with pytest.raises(ConfigError, match="sigma"):
        DiscreteGaussianNoise(sigma=float("inf"))
