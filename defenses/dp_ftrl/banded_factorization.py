"""Banded matrix factorization (BandMF): the strategy C for the prefix-sum workload A.

C is lower triangular with ``bands`` non-zero diagonals and every column of unit L2 norm; the
decoder is ``B = A·C⁻¹``. The noise the server adds to round t's sum is ``(C⁻¹ Z)_t`` with Z
i.i.d. Gaussian rows, so the released prefix sums carry ``B·Z``. With a min-separation schedule
of at least ``bands`` rounds the columns of one client's participations have disjoint supports,
so the sensitivity is ``√k`` for k participations whatever C is (column-normalised): C is
chosen to minimise the total squared error ``‖A·C⁻¹‖_F²`` of the prefix sums (the paper's
objective, up to the constant sensitivity) or, with ``objective="max"``, the largest squared error
of one prefix sum.

Optimisation: L-BFGS over the free band entries with the column normalisation built in (exact
gradient ``∂‖A C⁻¹‖² / ∂C = −2 C⁻ᵀ AᵀA C⁻¹ C⁻ᵀ`` projected through the normalisation), started
from the square-root Toeplitz factorization ``C = A^{1/2}`` (coefficients ``binom(2k, k)/4^k``)
truncated to the bands — near-optimal for prefix sums (Fichtenberger, Henzinger, Upadhyay 2023).
The result is never worse than that start nor than C = I (independent noise).

References
----------
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023.
Denisov, McMahan, Rush, Smith, Thakurta. "Improved Differential Privacy for SGD via Optimal
Private Linear Operators on Adaptive Streams." NeurIPS 2022.
Fichtenberger, Henzinger, Upadhyay. "Constant Matters: Fine-grained Error Bound on
Differentially Private Continual Observation." ICML 2023.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import linalg, optimize

from defenses.dp_ftrl.tree_factorization import prefix_workload


def band_mask(rounds: int, bands: int) -> np.ndarray:
    """``(rounds, rounds)`` bool: the lower-triangular band of width ``bands``."""
    i, j = np.indices((rounds, rounds))
    return (i >= j) & (i - j < bands)


def normalize_columns(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=0, keepdims=True)


def sqrt_toeplitz_start(rounds: int, bands: int) -> np.ndarray:
    """``A^{1/2}`` truncated to ``bands`` diagonals, columns normalised."""
    coef = np.ones(min(bands, rounds))
    for k in range(1, coef.size):
        coef[k] = coef[k - 1] * (2 * k - 1) / (2 * k)  # binom(2k, k) / 4^k
    c = np.zeros((rounds, rounds))
    for k, value in enumerate(coef):
        c += np.diag(np.full(rounds - k, value), -k)
    return normalize_columns(c)


def total_squared_error(strategy: np.ndarray) -> float:
    """``‖A·C⁻¹‖_F²``: the summed variance of the prefix sums per unit noise."""
    a = prefix_workload(strategy.shape[0])
    decoder = linalg.solve_triangular(strategy.T, a.T, lower=False).T  # A C⁻¹
    return float(np.sum(decoder**2))


def max_squared_error(strategy: np.ndarray) -> float:
    """``max_t ‖(A·C⁻¹)_t‖²``: the largest variance of one prefix sum per unit noise."""
    a = prefix_workload(strategy.shape[0])
    decoder = linalg.solve_triangular(strategy.T, a.T, lower=False).T  # A C⁻¹
    return float(np.max(np.sum(decoder**2, axis=1)))


OBJECTIVES = {"total": total_squared_error, "max": max_squared_error}


def _objective(
    free: np.ndarray, mask: np.ndarray, workload: np.ndarray, power: float
) -> tuple[float, np.ndarray]:
    """``power`` 1: ``Σ_t r_t`` (total squared error); ``power`` p > 1: ``‖r‖_p``, a smooth
    stand-in for ``max_t r_t``; ``r_t = ‖(A C⁻¹)_t‖²``. Value and gradient in the free entries."""
    raw = np.zeros(mask.shape)
    raw[mask] = free
    with np.errstate(all="ignore"):  # a trial step may make C (nearly) singular
        norms = np.linalg.norm(raw, axis=0)  # (rounds,)
        c = raw / norms
        inverse = linalg.solve_triangular(c, np.eye(c.shape[0]), lower=True, check_finite=False)
        decoder = workload @ inverse  # A C⁻¹
        rows = np.sum(decoder**2, axis=1)  # (rounds,) r_t
        if power == 1:
            value, weights = float(rows.sum()), np.ones_like(rows)
        else:
            top = float(rows.max())
            ratio = rows / top
            total = float(np.sum(ratio**power))
            value = top * total ** (1.0 / power)
            weights = ratio ** (power - 1) * total ** (1.0 / power - 1.0)  # ∂‖r‖_p / ∂r_t
        # ∂ Σ w_t r_t / ∂C = −2 C⁻ᵀ Aᵀ W A C⁻¹ C⁻ᵀ
        grad_c = -2.0 * inverse.T @ (workload.T @ (weights[:, None] * decoder)) @ inverse.T
        grad_raw = (grad_c - c * np.sum(c * grad_c, axis=0)) / norms
    if not (math.isfinite(value) and np.all(np.isfinite(grad_raw))):
        return math.inf, np.zeros(int(mask.sum()))  # the line search backs off
    return value, grad_raw[mask]


def _minimize(start: np.ndarray, mask: np.ndarray, power: float, iterations: int) -> np.ndarray:
    result = optimize.minimize(
        _objective,
        start[mask],
        args=(mask, prefix_workload(mask.shape[0]), power),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": iterations, "gtol": 1e-10},
    )
    out = np.zeros(mask.shape)
    out[mask] = result.x
    return out


@functools.lru_cache(maxsize=32)
def _optimized(rounds: int, bands: int, max_iterations: int, objective: str) -> np.ndarray:
    bands = min(bands, rounds)
    if bands == 1:
        return np.eye(rounds)
    mask = band_mask(rounds, bands)
    start = sqrt_toeplitz_start(rounds, bands)
    candidates = [np.eye(rounds), start]
    raw = _minimize(start, mask, 1.0, max_iterations)
    trials = [raw]
    if objective == "max":  # continuation in p: ‖r‖_p → max_t r_t
        for power in (4.0, 16.0, 64.0):
            raw = _minimize(normalize_columns(raw), mask, power, max_iterations)
            trials.append(raw)
    for trial in trials:
        if np.all(np.isfinite(trial)) and np.all(np.linalg.norm(trial, axis=0) > 0):
            candidates.append(normalize_columns(trial))
    return min(candidates, key=OBJECTIVES[objective])


def bandmf_strategy(
    rounds: int, bands: int, max_iterations: int = 300, objective: str = "total"
) -> np.ndarray:
    """The optimised, column-normalised, ``bands``-banded lower-triangular C (rounds × rounds).

    ``objective``: ``"total"`` (``‖A C⁻¹‖_F²``, the paper's) or ``"max"`` (the largest prefix
    variance, via ``‖r‖_p`` for p = 4, 16, 64 from the total's optimum; the best of all tried).

    Deterministic (same inputs, same matrix, bit for bit on one machine): a resumed run
    recomputes exactly the strategy it started with. Cached per process.
    """
    if rounds < 1 or bands < 1:
        raise ValueError("rounds and bands must be >= 1")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)} (got {objective!r})")
    out = _optimized(rounds, bands, max_iterations, objective).copy()
    out[~band_mask(rounds, min(bands, rounds))] = 0.0  # exact zeros outside the band
    return out


__all__ = [
    "OBJECTIVES",
    "band_mask",
    "bandmf_strategy",
    "max_squared_error",
    "normalize_columns",
    "sqrt_toeplitz_start",
    "total_squared_error",
]
