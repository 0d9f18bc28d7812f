"""Games with closed-form values: oracles for every estimator.

References
----------
.. [1] L. S. Shapley. "A Value for n-Person Games." 1953 (unanimity games, additivity).
.. [2] L. S. Shapley, M. Shubik. "A Method for Evaluating the Distribution of Power in a Committee
   System." APSR 48(3), 1954 (weighted voting).
.. [3] I. Mann, L. S. Shapley. "Values of Large Games, IV: Evaluating the Electoral College by
   Montecarlo Techniques." RAND RM-2651, 1960 (counting swings by size and weight).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.valuation.game import Game, mask_bits, popcount, to_mask


class AdditiveGame(Game):
    """``v(S) = base + Σ_{i∈S} w_i``: every semivalue and leave-one-out equal ``w``."""

    def __init__(self, weights: Sequence[float], base: float = 0.0) -> None:
        super().__init__(len(weights))
        self.weights = torch.tensor(weights, dtype=torch.float64)  # (n,)
        self.base = base

    def _evaluate(self, masks: Tensor) -> Tensor:
        return self.base + mask_bits(masks, self.n_players).to(torch.float64) @ self.weights


class UnanimityGame(Game):
    """``v(S) = 1`` if ``S ⊇ T`` (the carrier) else ``0``."""

    def __init__(self, n_players: int, carrier: Sequence[int]) -> None:
        super().__init__(n_players)
        if not carrier:
            raise ConfigError("carrier must name at least one player.")
        self.carrier = tuple(sorted(set(carrier)))
        self._carrier_mask = to_mask(self.carrier, n_players)

    def _evaluate(self, masks: Tensor) -> Tensor:
        return ((masks & self._carrier_mask) == self._carrier_mask).to(torch.float64)

    def semivalue(self, size_distribution: Tensor) -> Tensor:
        """Closed form: ``φ_i = Σ_s p(s)·C(n−t, s−t+1)/C(n−1, s)`` for ``i ∈ T``, else 0."""
        n, t = self.n_players, len(self.carrier)
        phi_in = sum(
            float(size_distribution[s]) * math.comb(n - t, s - t + 1) / math.comb(n - 1, s)
            for s in range(t - 1, n)
        )
        out = torch.zeros(n, dtype=torch.float64)
        out[list(self.carrier)] = phi_in
        return out


class GloveGame(Game):
    """``v(S) = min(|S ∩ L|, |S ∩ R|)`` (pairs of gloves)."""

    def __init__(self, left: Sequence[int], right: Sequence[int]) -> None:
        n_players = len(left) + len(right)
        super().__init__(n_players)
        if set(left) & set(right) or set(left) | set(right) != set(range(n_players)):
            raise ConfigError("left and right must partition the players 0..n-1.")
        self._left = to_mask(left, n_players)
        self._right = to_mask(right, n_players)
        self.left, self.right = tuple(left), tuple(right)

    def _evaluate(self, masks: Tensor) -> Tensor:
        n = self.n_players
        lefts = popcount(masks & self._left, n)
        rights = popcount(masks & self._right, n)
        return torch.minimum(lefts, rights).to(torch.float64)

    def shapley(self) -> Tensor:
        """Closed forms: one left glove and m right ones → m/(m+1) and 1/(m(m+1)); |L| = |R| → ½."""
        n, m_left, m_right = self.n_players, len(self.left), len(self.right)
        out = torch.zeros(n, dtype=torch.float64)
        if m_left == m_right:
            return out + 0.5
        if m_left == 1 or m_right == 1:
            single, many = (self.left, self.right) if m_left == 1 else (self.right, self.left)
            m = len(many)
            out[list(single)] = m / (m + 1)
            out[list(many)] = 1.0 / (m * (m + 1))
            return out
        raise ConfigError("closed-form glove values need |L| = |R| or one glove on a side.")


class WeightedVotingGame(Game):
    """``v(S) = 1`` if ``Σ_{i∈S} w_i ≥ quota`` else ``0`` (integer weights)."""

    def __init__(self, weights: Sequence[int], quota: int) -> None:
        super().__init__(len(weights))
        if quota <= 0 or any(w < 0 for w in weights):
            raise ConfigError("weights must be non-negative integers and quota positive.")
        self.int_weights = tuple(int(w) for w in weights)
        self.quota = int(quota)
        self._weights = torch.tensor(self.int_weights, dtype=torch.int64)

    def _evaluate(self, masks: Tensor) -> Tensor:
        totals = mask_bits(masks, self.n_players).to(torch.int64) @ self._weights
        return (totals >= self.quota).to(torch.float64)

    def shapley(self) -> Tensor:
        """Shapley–Shubik index by counting swings with a (size, weight) dynamic programme.

        For player ``i``, ``count[s, w]`` = number of coalitions of the other players with ``s``
        members and total weight ``w``; ``i`` swings them when ``quota − w_i ≤ w < quota``. This
        never enumerates coalitions, so it checks the bitmask estimators independently.
        """
        n, q = self.n_players, self.quota
        total = sum(self.int_weights)
        factor = np.array(
            [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
        )
        out = np.zeros(n)
        for i in range(n):
            count = np.zeros((n, total + 1))
            count[0, 0] = 1.0
            for j, w in enumerate(self.int_weights):
                if j == i:
                    continue
                shifted = np.zeros_like(count)
                shifted[1:, w:] = count[:-1, : total + 1 - w]
                count = count + shifted
            lo, hi = max(q - self.int_weights[i], 0), min(q, total + 1)
            swings = count[:, lo:hi].sum(axis=1) if hi > lo else np.zeros(n)
            out[i] = float(factor @ swings)
        return torch.from_numpy(out)
