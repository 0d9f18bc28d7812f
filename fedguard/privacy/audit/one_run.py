"""Auditing with one training run (Steinke, Nasr and Jagielski 2023).

``m`` canaries are each included in the run independently with probability ½. After the run the
auditor scores every canary, guesses "in" for the ``k₊`` highest scores and "out" for the ``k₋``
lowest, and abstains on the rest (``r = k₊ + k₋`` guesses, ``v`` of them correct). If the run is
(ε, δ)-DP with respect to each canary, with ``q = e^ε/(1 + e^ε)`` (the paper's main theorem)

    P[v correct or more] ≤ p(ε) = P[Bin(r, q) ≥ v] + 2mδ · max_{i=1..v} P[v − i ≤ Bin(r, q) < v]/i,

and ε_LB is the largest ε with ``p(ε) ≤ β = 1 − confidence``.

Conventions
-----------
* ``p(ε)`` is non-decreasing in ε whenever ``2mδ ≤ 1``: each term of the maximum equals
  ``(1 − c_i)·P[Bin ≥ v] + c_i·P[Bin ≥ v − i]`` with ``c_i = 2mδ/i ∈ [0, 1]``, a convex combination
  of binomial upper tails that grow with ``q``. So ``{ε : p(ε) ≤ β}`` is an interval ``[0, ε_LB]``
  and bisection finds its end exactly. Larger δ (``δ > 1/(2m)``) is refused: the argument no
  longer holds and the δ term dominates the p-value; use fewer canaries or a smaller δ.
* The guesses must be a function of the run's output alone, with ``k₊`` and ``k₋`` fixed before
  looking at which canaries were included (the paper's auditor takes them as inputs). Ties
  between equal scores are broken by canary index, which is independent of inclusion.
* Sweeping ``(k₊, k₋)`` over a grid and keeping the best bound is post-selection; following the
  paper's requirement that the guess counts be fixed in advance, :func:`one_run_audit` pays for the
  sweep with a union bound: each of the ``G`` grid points is tested at ``β/G``, so the maximum
  over the grid is a valid bound at ``1 − β``. A single point given by the caller costs nothing.
* The *ceiling* is the largest ε the design can certify even when every guess is right
  (``v = r``): 1000 canaries with 1000 guesses certify at most ≈ 5.81 at 95% (δ = 0). A true ε above
  the ceiling cannot be told apart from one at the ceiling; report it next to every bound.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*. arXiv:2305.08846.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from fedguard.errors import require
from fedguard.privacy.audit.result import AuditResult

#: Fractions of ``m`` used for ``k`` in the default guess grid: points ``(k, k)`` and ``(k, 0)``.
DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def _check_counts(n_canaries: int, n_guesses: int, n_correct: int, delta: float) -> None:
    require(n_canaries >= 1, "n_canaries", "a positive integer")
    require(0 <= n_guesses <= n_canaries, "n_guesses", "between 0 and n_canaries")
    require(0 <= n_correct <= n_guesses, "n_correct", "between 0 and n_guesses")
    require(
        0.0 <= delta <= 1.0 / (2.0 * n_canaries),
        "delta",
        f"in [0, 1/(2·n_canaries)] = [0, {1.0 / (2.0 * n_canaries):.3g}] for the one-run bound",
    )


def one_run_p_value(
    n_canaries: int, n_guesses: int, n_correct: int, epsilon: float, delta: float = 0.0
) -> float:
    """``p(ε)``: the probability, under (ε, δ)-DP, of at least ``n_correct`` correct guesses.

    Parameters
    ----------
    n_canaries
        ``m``, canaries each included with probability ½.
    n_guesses
        ``r``, guesses made (abstentions excluded).
    n_correct
        ``v``, correct guesses.
    epsilon, delta
        The (ε, δ) claim under test; ``δ ≤ 1/(2m)``.

    Returns
    -------
    float
        ``min(1, P[Bin(r, q) ≥ v] + 2mδ·max_i P[v − i ≤ Bin(r, q) < v]/i)``, ``q = e^ε/(1 + e^ε)``.

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (the bound with δ > 0 and its reference code).
    """
    _check_counts(n_canaries, n_guesses, n_correct, delta)
    require(epsilon >= 0.0, "epsilon", "≥ 0")
    q = float(special.expit(epsilon))
    r, v = n_guesses, n_correct
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Bin(r, q) ≥ v]
    if delta == 0.0 or v == 0:
        return min(tail, 1.0)
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # (v,) P[Bin = v − i], i = 1..v
    windows = np.cumsum(below)  # (v,) P[v − i ≤ Bin < v]
    alpha = float(np.max(windows / np.arange(1, v + 1)))
    return min(tail + 2.0 * n_canaries * delta * alpha, 1.0)


def one_run_epsilon(
    n_canaries: int,
    n_guesses: int,
    n_correct: int,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    tolerance: float = 1e-10,
) -> float:
    """ε_LB = the largest ε with ``p(ε) ≤ 1 − confidence`` (bisection; 0 if none).

    Examples
    --------
    At 95% with m = 1000: r = v = 100 gives 3.4930 (δ = 0) and 3.4654 (δ = 1e-5);
    r = v = 1000 gives 5.8091 (δ = 0).

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (bisection over ε, as in their reference code).
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    require(tolerance > 0.0, "tolerance", "> 0")
    beta = 1.0 - confidence
    if one_run_p_value(n_canaries, n_guesses, n_correct, 0.0, delta) > beta:
        return 0.0
    low, high = 0.0, 1.0  # p(low) ≤ β < p(high) once the bracket is found
    while one_run_p_value(n_canaries, n_guesses, n_correct, high, delta) <= beta:
        low, high = high, 2.0 * high
    while high - low > tolerance:
        middle = 0.5 * (low + high)
        if one_run_p_value(n_canaries, n_guesses, n_correct, middle, delta) <= beta:
            low = middle
        else:
            high = middle
    return low


def max_certifiable_epsilon(
    n_canaries: int,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    n_guesses: int | None = None,
    n_hypotheses: int = 1,
) -> float:
    """The ceiling: ε_LB when all ``n_guesses`` guesses (default: all ``m`` canaries) are right.

    ``n_hypotheses`` is the size of the union bound the audit pays (the guess grid); each
    hypothesis is then tested at ``(1 − confidence)/n_hypotheses``.

    Examples
    --------
    ``max_certifiable_epsilon(1000) ≈ 5.8091`` (95%, δ = 0).

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (the bound saturates with the number of canaries).
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    require(n_hypotheses >= 1, "n_hypotheses", "a positive integer")
    r = n_canaries if n_guesses is None else n_guesses
    beta = (1.0 - confidence) / n_hypotheses
    return one_run_epsilon(n_canaries, r, r, confidence=1.0 - beta, delta=delta)


def one_run_guesses(
    scores: ArrayLike, n_positive_guesses: int, n_negative_guesses: int
) -> NDArray[np.int8]:
    """Guess +1 ("included") for the ``k₊`` highest scores, −1 for the ``k₋`` lowest, else 0.

    Equal scores are ordered by canary index (a stable sort), never by inclusion.

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (the auditor abstains in the middle).
    """
    values = np.asarray(scores, dtype=np.float64).ravel()  # (m,)
    m = values.size
    require(m >= 1, "scores", "a non-empty array")
    require(bool(np.all(np.isfinite(values))), "scores", "finite numbers")
    require(n_positive_guesses >= 0, "n_positive_guesses", "≥ 0")
    require(n_negative_guesses >= 0, "n_negative_guesses", "≥ 0")
    require(
        n_positive_guesses + n_negative_guesses <= m,
        "n_positive_guesses + n_negative_guesses",
        "at most the number of canaries",
    )
    order = np.argsort(values, kind="stable")  # ascending, (m,)
    guesses = np.zeros(m, dtype=np.int8)
    guesses[order[:n_negative_guesses]] = -1
    if n_positive_guesses > 0:
        guesses[order[m - n_positive_guesses :]] = 1
    return guesses


def score_guesses(guesses: NDArray[np.int8], included: ArrayLike) -> tuple[int, int]:
    """``(r, v)``: the number of non-abstaining guesses and of correct ones."""
    truth = np.asarray(included, dtype=bool).ravel()  # (m,)
    require(truth.shape == guesses.shape, "included", "one boolean per canary")
    n_guesses = int(np.count_nonzero(guesses))
    correct = ((guesses == 1) & truth) | ((guesses == -1) & ~truth)
    return n_guesses, int(np.count_nonzero(correct))


def default_guess_grid(n_canaries: int) -> tuple[tuple[int, int], ...]:
    """``(k₊, k₋)`` points ``(k, k)`` and ``(k, 0)`` for ``k = ⌊f·m⌋`` over
    :data:`DEFAULT_GUESS_FRACTIONS` (duplicates and empty points removed)."""
    points: set[tuple[int, int]] = set()
    for fraction in DEFAULT_GUESS_FRACTIONS:
        k = math.floor(fraction * n_canaries)
        if k >= 1:
            points.add((k, 0))
            if 2 * k <= n_canaries:
                points.add((k, k))
    return tuple(sorted(points))


def one_run_audit(
    scores: ArrayLike,
    included: ArrayLike,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    guess_counts: Sequence[tuple[int, int]] | None = None,
) -> AuditResult:
    """One-run ε lower bound from canary scores (higher = "more likely included").

    Parameters
    ----------
    scores
        ``(m,)`` attack scores, one per canary.
    included
        ``(m,)`` ground truth: which canaries were inserted (each with probability ½).
    confidence
        ``1 − β``; the bound holds with at least this probability over the inclusion coins and
        the run's randomness.
    delta
        The δ of the audited claim, ``≤ 1/(2m)``.
    guess_counts
        ``(k₊, k₋)`` points to evaluate; a single point is tested at ``β``, ``G`` points each at
        ``β/G`` (union bound). Default: :func:`default_guess_grid`.

    Returns
    -------
    AuditResult
        ``method="one_run"``; ``details`` holds the chosen ``(k₊, k₋)``, ``r``, ``v``, the grid size
        and ``ceiling`` (:func:`max_certifiable_epsilon` for the grid's largest ``r`` at the same
        corrected level) and ``ceiling_single`` (all ``m`` guessed, no correction).

    References
    ----------
    Steinke, Nasr and Jagielski (2023), Algorithms 1 and 3.
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    values = np.asarray(scores, dtype=np.float64).ravel()  # (m,)
    truth = np.asarray(included, dtype=bool).ravel()  # (m,)
    m = values.size
    require(m >= 1, "scores", "a non-empty array")
    require(truth.size == m, "included", "one boolean per score")
    _check_counts(m, 0, 0, delta)
    grid = tuple(guess_counts) if guess_counts is not None else default_guess_grid(m)
    require(len(grid) >= 1, "guess_counts", "at least one (k_plus, k_minus) pair")
    n_hypotheses = len(grid)
    level = 1.0 - (1.0 - confidence) / n_hypotheses
    best_eps, best_point, best_rv = -1.0, grid[0], (0, 0)
    for k_plus, k_minus in grid:
        r, v = score_guesses(one_run_guesses(values, k_plus, k_minus), truth)
        if best_eps > 0 and one_run_p_value(m, r, v, best_eps, delta) > 1.0 - level:
            continue  # p is non-decreasing in ε, so this point's bound is below best_eps
        eps = one_run_epsilon(m, r, v, confidence=level, delta=delta)
        if eps > best_eps:
            best_eps, best_point, best_rv = eps, (k_plus, k_minus), (r, v)
    largest_r = max(k_plus + k_minus for k_plus, k_minus in grid)
    return AuditResult(
        method="one_run",
        epsilon=best_eps,
        kind="lower_bound",
        delta=delta,
        confidence=confidence,
        details={
            "n_canaries": m,
            "n_included": int(np.count_nonzero(truth)),
            "k_plus": int(best_point[0]),
            "k_minus": int(best_point[1]),
            "n_guesses": best_rv[0],
            "n_correct": best_rv[1],
            "n_hypotheses": n_hypotheses,
            "ceiling": max_certifiable_epsilon(
                m,
                confidence=confidence,
                delta=delta,
                n_guesses=largest_r,
                n_hypotheses=n_hypotheses,
            ),
            "ceiling_single": max_certifiable_epsilon(m, confidence=confidence, delta=delta),
        },
    )
