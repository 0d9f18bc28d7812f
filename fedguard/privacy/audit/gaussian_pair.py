"""ε(δ) of distinguishing two univariate Gaussians (possibly with different variances).

For output distributions P = N(m_p, s_p²) and Q = N(m_q, s_q²) the tight δ at ε is the
hockey-stick divergence ``δ_{P‖Q}(ε) = P(S) − e^ε Q(S)`` over ``S = {x : ln p(x) − ln q(x) > ε}``.
The log ratio is a quadratic in x, so S is a half-line, an interval, or the complement of one,
with endpoints in closed form. DP is symmetric in the neighbours, so
``δ(ε) = max(δ_{P‖Q}(ε), δ_{Q‖P}(ε))`` and ε(δ) is the smallest ε ≥ 0 with ``δ(ε) ≤ δ``. With equal
variances this is μ-GDP with ``μ = |m_p − m_q|/s`` (Dong, Roth and Su 2022); Andrew et al. (2024)
use it with unequal variances.

References
----------
Balle, B. and Wang, Y.-X. (2018). Improving the Gaussian mechanism for differential privacy:
analytical calibration and optimal denoising. *ICML 2018* (privacy profile as hockey-stick
divergence).
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from fedguard.errors import require


def _log_prob_below(x: float, mean: float, std: float) -> float:
    return float(stats.norm.logcdf(x, loc=mean, scale=std))


def _log_prob_above(x: float, mean: float, std: float) -> float:
    return float(stats.norm.logsf(x, loc=mean, scale=std))


def _log_prob_between(low: float, high: float, mean: float, std: float) -> float:
    if high <= low:
        return -math.inf
    if low > mean:  # both in the upper tail: difference of survival functions is accurate
        a, b = _log_prob_above(low, mean, std), _log_prob_above(high, mean, std)
    else:
        a, b = _log_prob_below(high, mean, std), _log_prob_below(low, mean, std)
    if b >= a:
        return -math.inf
    return a + math.log1p(-math.exp(b - a))


def _region_log_probs(
    epsilon: float, mean_p: float, std_p: float, mean_q: float, std_q: float
) -> tuple[float, float]:
    """``(ln P(S), ln Q(S))`` for ``S = {x : ln p(x) − ln q(x) > ε}``."""
    a = 0.5 / std_q**2 - 0.5 / std_p**2
    b = mean_p / std_p**2 - mean_q / std_q**2
    c = 0.5 * mean_q**2 / std_q**2 - 0.5 * mean_p**2 / std_p**2 + math.log(std_q / std_p) - epsilon
    if a == 0.0:  # equal variances: S is a half-line
        if b == 0.0:
            return (0.0, 0.0) if c > 0 else (-math.inf, -math.inf)
        root = -c / b
        if b > 0:
            return _log_prob_above(root, mean_p, std_p), _log_prob_above(root, mean_q, std_q)
        return _log_prob_below(root, mean_p, std_p), _log_prob_below(root, mean_q, std_q)
    discriminant = b * b - 4.0 * a * c
    if discriminant <= 0.0:
        return (0.0, 0.0) if a > 0 else (-math.inf, -math.inf)
    sq = math.sqrt(discriminant)
    half = -0.5 * (b + math.copysign(sq, b))  # numerically stable roots
    r1, r2 = half / a, (c / half if half != 0.0 else half / a)
    low, high = min(r1, r2), max(r1, r2)
    if a < 0:  # S is the interval between the roots
        return (
            _log_prob_between(low, high, mean_p, std_p),
            _log_prob_between(low, high, mean_q, std_q),
        )
    # S is the complement of [low, high]
    log_p = float(
        np.logaddexp(_log_prob_below(low, mean_p, std_p), _log_prob_above(high, mean_p, std_p))
    )
    log_q = float(
        np.logaddexp(_log_prob_below(low, mean_q, std_q), _log_prob_above(high, mean_q, std_q))
    )
    return log_p, log_q


def _one_direction_delta(
    epsilon: float, mean_p: float, std_p: float, mean_q: float, std_q: float
) -> float:
    log_p, log_q = _region_log_probs(epsilon, mean_p, std_p, mean_q, std_q)
    if log_p == -math.inf:
        return 0.0
    gap = epsilon + log_q - log_p
    if gap >= 0.0:
        return 0.0
    return math.exp(log_p) * -math.expm1(gap)


def _check(mean_p: float, std_p: float, mean_q: float, std_q: float) -> None:
    require(math.isfinite(mean_p) and math.isfinite(mean_q), "mean", "finite")
    require(std_p > 0.0 and math.isfinite(std_p), "std_p", "a finite number > 0")
    require(std_q > 0.0 and math.isfinite(std_q), "std_q", "a finite number > 0")


def gaussian_pair_delta(
    epsilon: float, mean_p: float, std_p: float, mean_q: float, std_q: float
) -> float:
    """``max(δ_{P‖Q}(ε), δ_{Q‖P}(ε))`` for P = N(mean_p, std_p²), Q = N(mean_q, std_q²).

    References
    ----------
    Balle and Wang (2018) (privacy profile as hockey-stick divergence); Andrew et al. (2024).
    """
    _check(mean_p, std_p, mean_q, std_q)
    require(epsilon >= 0.0, "epsilon", "≥ 0")
    return max(
        _one_direction_delta(epsilon, mean_p, std_p, mean_q, std_q),
        _one_direction_delta(epsilon, mean_q, std_q, mean_p, std_p),
    )


def gaussian_pair_epsilon(
    delta: float,
    mean_p: float,
    std_p: float,
    mean_q: float,
    std_q: float,
    *,
    tolerance: float = 1e-10,
) -> float:
    """Smallest ε ≥ 0 with ``gaussian_pair_delta(ε, ...) ≤ delta`` (δ(ε) is non-increasing).

    References
    ----------
    Andrew et al. (2024) (ε of the fitted pair of Gaussians).
    """
    require(0.0 < delta < 1.0, "delta", "in (0, 1)")

    def excess(eps: float) -> float:
        return gaussian_pair_delta(eps, mean_p, std_p, mean_q, std_q) - delta

    if excess(0.0) <= 0.0:
        return 0.0
    high = 1.0
    while excess(high) > 0.0:
        high *= 2.0
        require(high < 1e6, "the two Gaussians", "distinguishable at a finite ε")
    return float(optimize.brentq(excess, 0.0, high, xtol=tolerance))
