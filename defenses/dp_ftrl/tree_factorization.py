"""Tree aggregation as a factorization ``A = B·C`` of the prefix-sum workload, with restarts.

Within one tree of ``n`` rounds the nodes are the dyadic intervals ``[k·2^h, (k+1)·2^h)`` that
lie inside ``[0, n)``; node ``j`` is released (with fresh Gaussian noise) in the round its
interval ends. ``C`` (nodes × rounds) has a one where a node covers a round. The prefix sum of
rounds ``0 … t`` is estimated from the nodes released by round ``t``:

* ``"plain"``: the sum of the nodes of the binary decomposition of ``t + 1`` (Dwork et al. 2010;
  Chan, Shi, Song 2011);
* ``"honaker"``: the same nodes, each replaced by its minimum-variance unbiased estimate from its
  own (completed) subtree, combined bottom-up — a node at level h then has variance
  ``1 / (2 − 2^{-h})`` of a raw node's (Honaker 2015; the online variant of Kairouz et al. 2021,
  used by TensorFlow Privacy's efficient tree aggregation).

With restarts every ``restart_every`` rounds a new tree starts; the prefix sums of later rounds
add the (estimated) totals of the earlier trees, so ``C`` is block diagonal and ``B·C = A``
holds exactly (both estimators are unbiased).

References
----------
Dwork, Naor, Pitassi, Rothblum. "Differential Privacy Under Continual Observation." STOC 2010.
Chan, Shi, Song. "Private and Continual Release of Statistics." ACM TISSEC 2011.
Honaker. "Efficient Use of Differentially Private Binary Trees." TPDP 2015.
Kairouz, McMahan, Song, Thakkar, Thakurta, Xu. "Practical and Private (Deep) Learning without
Sampling or Shuffling." ICML 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("plain", "honaker")


@dataclass(frozen=True)
class Factorization:
    """``decoder`` B (rounds × nodes), ``strategy`` C (nodes × rounds) with B·C = A (prefix
    sums), and the round in which each node (row of C) is released, ``(nodes,)``."""

    decoder: np.ndarray
    strategy: np.ndarray
    release_round: np.ndarray


def prefix_workload(rounds: int) -> np.ndarray:
    """``A`` (rounds × rounds): lower-triangular ones, the prefix sums."""
    return np.tril(np.ones((rounds, rounds)))


def _tree_nodes(n: int) -> list[tuple[int, int]]:
    """Dyadic intervals ``(start, level)`` inside ``[0, n)``, in release order (end, then level)."""
    nodes = []
    for end in range(1, n + 1):
        level = 0
        while end % (1 << level) == 0:
            nodes.append((end - (1 << level), level))
            level += 1
    return nodes


def _single_tree(n: int, estimator: str) -> Factorization:
    nodes = _tree_nodes(n)
    index = {node: j for j, node in enumerate(nodes)}
    m = len(nodes)
    strategy = np.zeros((m, n))
    for j, (start, level) in enumerate(nodes):
        strategy[j, start : start + (1 << level)] = 1.0
    release = np.array([start + (1 << level) - 1 for start, level in nodes], dtype=np.int64)
    # weights (over the raw nodes) of each node's estimate; variances in units of one node's
    weights = np.eye(m)
    if estimator == "honaker":
        variance = {0: 1.0}
        for j, (start, level) in enumerate(nodes):  # children are released before parents
            if level == 0:
                continue
            half = 1 << (level - 1)
            left, right = index[(start, level - 1)], index[(start + half, level - 1)]
            children_var = 2.0 * variance[level - 1]
            own = 1.0 / (1.0 + 1.0 / children_var)  # inverse-variance weighting
            variance[level] = own
            weight_self = own  # (1/1) / (1/1 + 1/children_var)
            weights[j] = (1.0 - weight_self) * (weights[left] + weights[right])
            weights[j, j] += weight_self
    decoder = np.zeros((n, m))
    for t in range(n):
        length, start = t + 1, 0
        for level in reversed(range(length.bit_length())):
            if length >> level & 1:
                decoder[t] += weights[index[(start, level)]]
                start += 1 << level
    return Factorization(decoder, strategy, release)


def tree_factorization(rounds: int, restart_every: int, estimator: str = "plain") -> Factorization:
    """B, C of tree aggregation over ``rounds`` with a new tree every ``restart_every`` rounds."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS} (got {estimator!r})")
    if rounds < 1 or restart_every < 1:
        raise ValueError("rounds and restart_every must be >= 1")
    blocks = [
        _single_tree(min(restart_every, rounds - s), estimator)
        for s in range(0, rounds, restart_every)
    ]
    m = sum(b.strategy.shape[0] for b in blocks)
    decoder = np.zeros((rounds, m))
    strategy = np.zeros((m, rounds))
    release = np.zeros(m, dtype=np.int64)
    row, col = 0, 0
    earlier_totals = np.zeros(m)  # B-row of the sum of all earlier trees' rounds
    for block in blocks:
        mb, nb = block.strategy.shape
        strategy[row : row + mb, col : col + nb] = block.strategy
        release[row : row + mb] = block.release_round + col
        decoder[col : col + nb] = earlier_totals
        decoder[col : col + nb, row : row + mb] += block.decoder
        earlier_totals = decoder[col + nb - 1].copy()
        row, col = row + mb, col + nb
    return Factorization(decoder, strategy, release)


__all__ = ["ESTIMATORS", "Factorization", "prefix_workload", "tree_factorization"]
