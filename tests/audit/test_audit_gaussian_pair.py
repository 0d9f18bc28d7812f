"""ε(δ) of a pair of Gaussians against numerical integration and the equal-variance (GDP) case."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from fedguard.audit import gaussian_pair_delta, gaussian_pair_epsilon, gdp_epsilon
from fedguard.errors import ConfigError


def quadrature_delta(eps: float, mp: float, sp: float, mq: float, sq: float) -> float:
    low = min(mp - 40 * sp, mq - 40 * sq)
    high = max(mp + 40 * sp, mq + 40 * sq)

    def one(ma: float, sa: float, mb: float, sb: float) -> float:
        def f(x: float) -> float:
            return max(0.0, stats.norm.pdf(x, ma, sa) - math.exp(eps) * stats.norm.pdf(x, mb, sb))

        return integrate.quad(f, low, high, points=[ma, mb], limit=500)[0]

    return max(one(mp, sp, mq, sq), one(mq, sq, mp, sp))


@pytest.mark.parametrize(
    "pair",
    [(0.5, 1.0, 0.0, 1.3), (0.1, 0.02, 0.0, 0.03), (2.0, 0.5, 0.0, 1.0), (0.0, 1.0, 0.0, 2.0)],
)
@pytest.mark.parametrize("epsilon", [0.0, 1.0, 3.0])
def test_matches_quadrature(pair: tuple[float, float, float, float], epsilon: float) -> None:
    assert gaussian_pair_delta(epsilon, *pair) == pytest.approx(
        quadrature_delta(epsilon, *pair), rel=1e-6, abs=1e-9
    )


@pytest.mark.parametrize(("shift", "std"), [(1.0, 1.0), (0.05, 0.02), (3.0, 2.0)])
def test_equal_variances_reduce_to_gdp(shift: float, std: float) -> None:
    assert gaussian_pair_epsilon(1e-5, shift, std, 0.0, std) == pytest.approx(
        gdp_epsilon(shift / std, 1e-5), rel=1e-8
    )


def test_symmetric_and_monotone() -> None:
    pair = (0.4, 0.7, 0.0, 1.0)
    swapped = (0.0, 1.0, 0.4, 0.7)
    eps_grid = np.linspace(0, 5, 26)
    deltas = [gaussian_pair_delta(e, *pair) for e in eps_grid]
    assert deltas == pytest.approx([gaussian_pair_delta(e, *swapped) for e in eps_grid], rel=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(deltas))
    eps = [gaussian_pair_epsilon(d, *pair) for d in (1e-8, 1e-5, 1e-3, 1e-1)]
    assert all(a > b for a, b in itertools.pairwise(eps))
    assert gaussian_pair_delta(eps[1], *pair) == pytest.approx(1e-5, rel=1e-6)


def test_identical_distributions_have_zero_epsilon() -> None:
    assert gaussian_pair_epsilon(1e-5, 0.3, 0.1, 0.3, 0.1) == 0.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="std_p"):
        gaussian_pair_delta(1.0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="delta"):
        gaussian_pair_epsilon(0.0, 0.0, 1.0, 0.0, 1.0)
