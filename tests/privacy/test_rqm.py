"""Randomized Quantization Mechanism: exact distribution and its Rényi DP."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from fedguard.privacy.accountants import RdpAccountant
from fedguard.privacy.events import Composed, RandomizedQuantization
from fedguard.privacy.rqm import (
    renyi_divergence_matrix,
    rqm_bits_per_coordinate,
    rqm_coordinate_rdp,
    rqm_distribution,
    rqm_input_grid,
    rqm_levels,
    rqm_pure_epsilon,
)

ORDERS = [1.5, 2.0, 3.7, 8.0, 32.0]


def brute_force_distribution(
    x: np.ndarray, clip: float, padding: float, m: int, q: float
) -> np.ndarray:
    """Enumerate all 2^(m−2) keep patterns of the interior levels (Youn et al. 2023, Alg. 1)."""
    b = rqm_levels(clip, padding, m)
    out = np.zeros((len(x), m))
    for pattern in itertools.product([0, 1], repeat=m - 2):
        kept = [0] + [i + 1 for i, k in enumerate(pattern) if k] + [m - 1]
        weight = math.prod(q if k else 1 - q for k in pattern)
        for g, value in enumerate(np.clip(x, -clip, clip)):
            lo = max(i for i in kept if b[i] <= value)
            hi = min(i for i in kept if b[i] >= value)
            if lo == hi:
                out[g, lo] += weight
                continue
            p_up = (value - b[lo]) / (b[hi] - b[lo])
            out[g, hi] += weight * p_up
            out[g, lo] += weight * (1 - p_up)
    return out


@pytest.mark.parametrize(
    ("m", "q", "padding"), [(2, 0.5, 0.3), (3, 0.2, 0.5), (5, 0.6, 0.25), (7, 0.35, 1.0)]
)
def test_exact_distribution_equals_brute_force(m: int, q: float, padding: float) -> None:
    x = np.concatenate([np.linspace(-1.3, 1.3, 27), rqm_levels(1.0, padding, m)])
    exact = rqm_distribution(x, 1.0, padding, m, q)
    brute = brute_force_distribution(x, 1.0, padding, m, q)
    np.testing.assert_allclose(exact, brute, atol=1e-14)
    # RDP from the brute-force distributions on the same grid
    grid = rqm_input_grid(1.0, padding, m, 33)
    brute_grid = brute_force_distribution(grid, 1.0, padding, m, q)
    expected = [renyi_divergence_matrix(brute_grid, a).max() for a in ORDERS]
    np.testing.assert_allclose(rqm_coordinate_rdp(1.0, padding, m, q, ORDERS), expected, rtol=1e-10)


def test_distribution_is_normalised_and_unbiased() -> None:
    x = np.linspace(-1.0, 1.0, 41)
    dist = rqm_distribution(x, 1.0, 0.4, 9, 0.3)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(dist @ rqm_levels(1.0, 0.4, 9), x, atol=1e-14)


def test_distribution_matches_a_simulation() -> None:
    """Sample the mechanism directly (keep patterns, randomized rounding) and chi-square test."""
    rng = np.random.default_rng(0)
    m, q, clip, padding, x, n = 6, 0.4, 1.0, 0.5, 0.37, 40_000
    b = rqm_levels(clip, padding, m)
    keep = rng.random((n, m)) < q
    keep[:, 0] = keep[:, -1] = True
    lower = np.where(keep & (b <= x), np.arange(m), -1).max(axis=1)
    upper = np.where(keep & (b >= x), np.arange(m), m).min(axis=1)
    p_up = (x - b[lower]) / (b[upper] - b[lower])
    out = np.where(rng.random(n) < p_up, upper, lower)
    counts = np.bincount(out, minlength=m)
    expected = n * rqm_distribution(np.array([x]), clip, padding, m, q)[0]
    support = expected > 0
    assert np.all(counts[~support] == 0)
    assert stats.chisquare(counts[support], expected[support]).pvalue > 1e-3


def test_two_levels_is_pure_dp_with_the_papers_epsilon() -> None:
    for clip, padding in [(1.0, 0.5), (0.3, 2.0)]:
        expected = math.log(1 + 2 * clip / padding)
        assert rqm_pure_epsilon(clip, padding, 2, 0.5) == pytest.approx(expected, rel=1e-12)
        rdp = rqm_coordinate_rdp(clip, padding, 2, 0.5, [2.0, 64.0, 4096.0])
        assert np.all(rdp <= expected + 1e-12) and rdp[-1] == pytest.approx(expected, rel=0.01)


def test_grid_worst_case_is_not_beaten_by_dense_random_inputs() -> None:
    rng = np.random.default_rng(1)
    clip, padding, m, q = 1.0, 0.3, 6, 0.45
    found = rqm_coordinate_rdp(clip, padding, m, q, ORDERS)
    dense = np.sort(rng.uniform(-clip, clip, 300))
    dists = rqm_distribution(dense, clip, padding, m, q)
    for order, bound in zip(ORDERS, found, strict=True):
        assert renyi_divergence_matrix(dists, order).max() <= bound * (1 + 1e-12)


def test_symmetry_used_to_halve_the_search() -> None:
    x = np.linspace(-1, 1, 15)
    dist = rqm_distribution(x, 1.0, 0.5, 7, 0.3)
    np.testing.assert_allclose(rqm_distribution(-x, 1.0, 0.5, 7, 0.3), dist[:, ::-1], atol=1e-15)


def test_rdp_properties_and_composition() -> None:
    rdp = rqm_coordinate_rdp(1.0, 0.5, 8, 0.4, ORDERS)
    assert np.all(np.diff(rdp) >= -1e-12) and np.all(rdp > 0)  # non-decreasing in the order
    # less randomness (keep more levels) → less privacy at the same order
    assert np.all(rqm_coordinate_rdp(1.0, 0.5, 8, 0.9, ORDERS) > rdp)
    event = RandomizedQuantization(1.0, 0.5, 8, 0.4, coordinates=10)
    acc = RdpAccountant(orders=tuple(ORDERS))
    np.testing.assert_allclose(acc.rdp(event), 10 * rdp, rtol=1e-12)
    np.testing.assert_allclose(acc.rdp(Composed((event,), count=5)), 50 * rdp, rtol=1e-12)
    assert np.isfinite(acc.epsilon(Composed((event,), count=5), 1e-5))
    # keep_probability = 1 is deterministic rounding: distant inputs have disjoint supports
    assert np.isinf(rqm_coordinate_rdp(1.0, 0.5, 8, 1.0, [2.0])[0])
    assert rqm_bits_per_coordinate(16) == 4.0


def test_pruned_search_equals_the_full_pair_search() -> None:
    # the per-order maximum is searched only over pairs whose D_∞ can still reach it (D_α is
    # non-decreasing in α); the full search over every pair gives the same numbers, bit for bit
    from fedguard.privacy.accountants import DEFAULT_ORDERS

    for clip, padding, m, q in [(1.0, 0.7, 24, 0.3), (0.5, 0.2, 9, 0.8), (1.0, 1.0, 3, 0.5)]:
        grid = rqm_input_grid(clip, padding, m, 33)
        dists = rqm_distribution(grid, clip, padding, m, q)
        rows = np.flatnonzero(grid <= 0)
        orders = [*DEFAULT_ORDERS[::7], 1.5, 1.1]  # unsorted on purpose
        full = [renyi_divergence_matrix(dists, a, rows).max() for a in orders]
        np.testing.assert_array_equal(rqm_coordinate_rdp(clip, padding, m, q, orders), full)


def test_dimension_change_reuses_the_per_coordinate_divergences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fedguard.privacy import rqm
    from fedguard.privacy.accountants import rdp as rdp_module

    calls: list[int] = []
    original = rqm.rqm_coordinate_rdp

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rqm, "rqm_coordinate_rdp", counting)
    for module in (rqm, rdp_module):
        for name in dir(module):
            if hasattr(getattr(module, name), "cache_clear"):
                getattr(module, name).cache_clear()
    acc = RdpAccountant(orders=tuple(ORDERS))
    small = acc.rdp(RandomizedQuantization(1.0, 0.5, 16, 0.4, coordinates=10))
    large = acc.rdp(RandomizedQuantization(1.0, 0.5, 16, 0.4, coordinates=123_456))
    assert len(calls) == 1  # a new model size does not recompute the exact divergences
    np.testing.assert_allclose(large, small / 10 * 123_456, rtol=1e-12)
