"""Clopper-Pearson bounds against scipy's exact binomial interval and their defining tails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedguard.audit import (
    clopper_pearson_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from fedguard.errors import ConfigError


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (0, 1000), (517, 1000), (1, 7)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_matches_scipy_exact_interval(k: int, n: int, confidence: float) -> None:
    low, high = clopper_pearson_interval(k, n, confidence)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert float(low) == pytest.approx(ref.low, abs=1e-12)
    assert float(high) == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (5, 10), (9, 10), (250, 1000)])
def test_bounds_solve_their_defining_tail_equations(k: int, n: int) -> None:
    tail = 0.025
    low = float(clopper_pearson_lower(k, n, tail))
    high = float(clopper_pearson_upper(k, n, tail))
    assert stats.binom.sf(k - 1, n, low) == pytest.approx(tail, rel=1e-9)  # P[X ≥ k | p_lo]
    assert stats.binom.cdf(k, n, high) == pytest.approx(tail, rel=1e-9)  # P[X ≤ k | p_hi]


def test_closed_forms_at_the_edges() -> None:
    n, tail = 1000, 0.025
    assert float(clopper_pearson_lower(n, n, tail)) == pytest.approx(tail ** (1 / n), rel=1e-12)
    assert float(clopper_pearson_upper(0, n, tail)) == pytest.approx(1 - tail ** (1 / n), rel=1e-9)
    assert float(clopper_pearson_lower(0, n, tail)) == 0.0
    assert float(clopper_pearson_upper(n, n, tail)) == 1.0


def test_vectorised_over_counts() -> None:
    k = np.array([0, 2, 5, 10])
    low = clopper_pearson_lower(k, 10, 0.05)
    assert low.shape == (4,)
    assert np.all(np.diff(low) > 0)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ConfigError, match="successes"):
        clopper_pearson_lower(11, 10, 0.05)
    with pytest.raises(ConfigError, match="trials"):
        clopper_pearson_upper(0, 0, 0.05)
    with pytest.raises(ConfigError, match="confidence"):
        clopper_pearson_interval(1, 10, 1.5)
