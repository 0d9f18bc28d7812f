"""Exact (Clopper-Pearson) confidence bounds for a binomial proportion.

Convention: a *two-sided* interval at confidence ``c`` puts ``(1 − c)/2`` in each tail, so its
lower end alone is a one-sided lower bound at confidence ``1 − (1 − c)/2``. The auditing code only
ever uses one end of each interval (a lower bound on the true-positive rate, an upper bound on the
false-positive rate); by the union bound the two ends hold together with probability ``≥ c``.

References
----------
Clopper, C. J. and Pearson, E. S. (1934). The use of confidence or fiducial limits illustrated in
the case of the binomial. *Biometrika* 26(4), 404-413.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from fedguard.errors import require


def _check_counts(successes: NDArray[np.int64], trials: NDArray[np.int64]) -> None:
    require(bool(np.all(trials >= 1)), "trials", "a positive integer")
    require(
        bool(np.all((successes >= 0) & (successes <= trials))),
        "successes",
        "an integer between 0 and trials",
    )


def _tail_probability(tail_probability: float) -> None:
    require(0.0 < tail_probability < 0.5, "tail_probability", "in (0, 0.5)")


def clopper_pearson_lower(
    successes: ArrayLike, trials: ArrayLike, tail_probability: float
) -> NDArray[np.float64]:
    """One-sided exact lower bound ``p_lo`` with ``P[Bin(n, p_lo) ≥ k] = tail_probability``.

    Parameters
    ----------
    successes, trials
        Counts ``k`` and ``n`` (broadcastable integer arrays).
    tail_probability
        Probability that the bound fails, e.g. ``0.025`` for the lower end of a 95% two-sided
        interval.

    Returns
    -------
    numpy.ndarray
        ``Beta(tail; k, n − k + 1)`` quantile, ``0`` where ``k = 0``.

    References
    ----------
    Clopper and Pearson (1934).
    """
    k = np.asarray(successes, dtype=np.int64)
    n = np.asarray(trials, dtype=np.int64)
    _check_counts(k, n)
    _tail_probability(tail_probability)
    safe_k = np.maximum(k, 1)
    bound = stats.beta.ppf(tail_probability, safe_k, n - safe_k + 1)
    return np.asarray(np.where(k == 0, 0.0, bound), dtype=np.float64)


def clopper_pearson_upper(
    successes: ArrayLike, trials: ArrayLike, tail_probability: float
) -> NDArray[np.float64]:
    """One-sided exact upper bound ``p_hi`` with ``P[Bin(n, p_hi) ≤ k] = tail_probability``.

    Returns ``Beta(1 − tail; k + 1, n − k)`` quantile, ``1`` where ``k = n``.

    References
    ----------
    Clopper and Pearson (1934).
    """
    k = np.asarray(successes, dtype=np.int64)
    n = np.asarray(trials, dtype=np.int64)
    _check_counts(k, n)
    _tail_probability(tail_probability)
    safe_k = np.minimum(k, n - 1)
    bound = stats.beta.ppf(1.0 - tail_probability, safe_k + 1, n - safe_k)
    return np.asarray(np.where(k == n, 1.0, bound), dtype=np.float64)


def clopper_pearson_interval(
    successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two-sided exact interval at ``confidence`` (``(1 − confidence)/2`` in each tail).

    References
    ----------
    Clopper and Pearson (1934).
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    tail = (1.0 - confidence) / 2.0
    return (
        clopper_pearson_lower(successes, trials, tail),
        clopper_pearson_upper(successes, trials, tail),
    )
