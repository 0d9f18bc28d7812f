"""Sensitivity of a factorization's strategy C under a participation pattern.

One client contributes a vector of L2 norm at most 1 (in clip norms) in each round it takes part
in; rounds are columns of C. For a set π of participation rounds the released ``C·x`` moves by
``‖Σ_{i∈π} C[:, i] u_i‖`` with ``‖u_i‖ ≤ 1``, whose square is at most
``Σ_{i,j∈π} |(CᵀC)_{ij}|`` — with equality when ``CᵀC`` is entrywise non-negative on π (all u_i
equal), which holds for trees and for non-negative C. The sensitivity is the maximum over the
patterns the schedule allows.

Patterns: under the min-separation schedule with b groups the client of group g takes part (at
most) in rounds ``g, g + b, g + 2b, …`` — b patterns, k = ⌈T/b⌉ participations at most; every
client every round is b = 1. Sampling inside a group only removes rounds, which cannot increase
the bound for non-negative ``CᵀC``; such sub-patterns are covered.

When ``bands ≤ b`` the columns of one pattern have disjoint supports, so the squared
sensitivity is the largest sum of squared column norms over a pattern — ``k`` for a
column-normalised C.

References
----------
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023 (Sec. 2, sensitivity under b-min-separation).
Choquette-Choo, McMahan, Rush, Thakurta. "Multi-Epoch Matrix Factorization Mechanisms for
Private Machine Learning." ICML 2023.
"""

from __future__ import annotations

import math

import numpy as np


def cyclic_patterns(rounds: int, min_separation: int) -> list[np.ndarray]:
    """The participation rounds of each of the ``min_separation`` groups."""
    return [np.arange(g, rounds, min_separation) for g in range(min(min_separation, rounds))]


def max_participations(rounds: int, min_separation: int) -> int:
    return math.ceil(rounds / min_separation)


def sensitivity_squared(strategy: np.ndarray, patterns: list[np.ndarray]) -> float:
    """``max_π Σ_{i,j∈π} |(CᵀC)_{ij}|`` (exact when CᵀC ≥ 0 on the patterns)."""
    gram = np.abs(strategy.T @ strategy)
    return max(float(gram[np.ix_(p, p)].sum()) for p in patterns)


def prefix_sensitivity_squared(
    strategy: np.ndarray, release_round: np.ndarray, patterns: list[np.ndarray]
) -> np.ndarray:
    """``(rounds,)``: squared sensitivity of everything released up to and including round t.

    The rows of C released by round t (``release_round ≤ t``) restricted to the rounds so far;
    non-decreasing in t; the last entry is :func:`sensitivity_squared`.
    """
    rounds = strategy.shape[1]
    indicator = np.zeros((len(patterns), rounds))  # (patterns, rounds)
    for g, p in enumerate(patterns):
        indicator[g, p] = 1.0
    out = np.zeros(rounds)
    if np.all(strategy >= 0):  # ‖C_π 1‖² adds up row by row
        per_pattern = np.zeros(len(patterns))
        for t in range(rounds):
            rows = strategy[release_round == t]  # (new rows, rounds)
            per_pattern += np.sum((rows @ indicator.T) ** 2, axis=0)
            out[t] = per_pattern.max(initial=0.0)
        return out
    gram = np.zeros((rounds, rounds))
    for t in range(rounds):
        rows = strategy[release_round == t]
        gram += rows.T @ rows
        absolute = np.abs(gram)
        out[t] = max(float(v @ absolute @ v) for v in indicator)
    return out


__all__ = [
    "cyclic_patterns",
    "max_participations",
    "prefix_sensitivity_squared",
    "sensitivity_squared",
]
