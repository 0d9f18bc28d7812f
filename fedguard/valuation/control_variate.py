"""Control variate for sampled semivalues: the FedAvg first-order surrogate game.

FedAvg builds a coalition's model from the *mean* of its clients' updates, so to first order in the
update the coalition's gain over the initial model is the mean of its members' solo gains:

``u(S) = v(∅) + (1/|S|) Σ_{i∈S} g_i``,  ``g_i = v({i}) − v(∅)``,  ``u(∅) = v(∅)``.

``u`` costs the ``n + 1`` utilities ``v(∅), v({i})`` (which every sampling estimator here evaluates
anyway) and its semivalue has a closed form (:meth:`MeanGainSurrogate.semivalue`). A sampling
estimator ``φ̂`` run on the residual game ``v − u + v(∅)`` plus the exact ``φ(u)`` is unbiased
whenever ``φ̂`` is (every estimator here is linear in the utilities, and ``u`` is fixed by exactly
evaluated coalitions, not by the samples), and its variance is that of the residual only. The
coefficient of the control variate is fixed at 1 (Goldwasser & Hooker fit it from the samples,
which buys a little variance at the price of a small bias; we keep the estimator unbiased).

On the digits game of issue 8 (n = 8, MR, validation loss) the residual's spread within a
coalition size is 11–18× smaller than the utility's, and the relative L2 error of permutation
sampling at 8n evaluations drops from 0.116 to 0.006. On games far from FedAvg's first order (a
client that ruins any coalition) the gain is smaller but the estimate stays unbiased.

References
----------
.. [1] J. Goldwasser, G. Hooker. "Stabilizing Estimates of Shapley Values with Control Variates."
   xAI 2024, arXiv:2310.07672 (ControlSHAP).
.. [2] H. B. McMahan et al. "Communication-Efficient Learning of Deep Networks from Decentralized
   Data." AISTATS 2017 (FedAvg: the aggregate is the mean of the clients' updates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.valuation.game import QueryTracker, mask_bits


@dataclass(frozen=True)
class MeanGainSurrogate:
    """``u(S) = v(∅) + mean_{i∈S} g_i`` with ``gains`` ``(n,)`` = ``v({i}) − v(∅)``."""

    empty: float
    gains: Tensor  # (n,) float64

    @property
    def n_players(self) -> int:
        return int(self.gains.shape[0])

    def excess(self, masks: Tensor) -> Tensor:
        """``(k,)`` masks → ``(k,)`` ``u(S) − v(∅)`` (0 for the empty coalition)."""
        bits = mask_bits(masks.reshape(-1), self.n_players).to(torch.float64)  # (k, n)
        sizes = bits.sum(dim=1)  # (k,)
        return (bits @ self.gains) / sizes.clamp(min=1.0)  # (k,)

    def marginals(self, perms: Tensor) -> Tensor:
        """``(m, n)`` permutations → ``(m, n)`` marginal contributions of ``u`` by player."""
        gains = self.gains[perms]  # (m, n) gain of the player at each position
        positions = torch.arange(1, perms.shape[1] + 1, dtype=torch.float64)  # (n,)
        prefix_means = gains.cumsum(dim=1) / positions  # (m, n) u(prefix_j) − v(∅)
        previous = torch.cat([torch.zeros_like(prefix_means[:, :1]), prefix_means[:, :-1]], dim=1)
        marginals = torch.empty_like(prefix_means)
        marginals.scatter_(1, perms, prefix_means - previous)
        return marginals

    def semivalue(self, size_distribution: Tensor) -> Tensor:
        """Exact semivalue of ``u`` for a distribution ``p`` over predecessor sizes ``0..n−1``.

        For ``S`` uniform among the size-``s`` coalitions without ``i``, with ``G = Σ_j g_j`` and
        ``ḡ_{−i} = (G − g_i)/(n − 1)``: ``E[u(S ∪ i) − v(∅)] = (g_i + s·ḡ_{−i})/(s + 1)`` and
        ``E[u(S) − v(∅)] = ḡ_{−i}`` for ``s ≥ 1`` (0 for ``s = 0``), so
        ``φ_i = Σ_s p(s) (E[u(S ∪ i)] − E[u(S)])``.
        """
        n = self.n_players
        g = self.gains  # (n,)
        others = (g.sum() - g) / max(n - 1, 1)  # (n,) mean gain of the other players
        s = torch.arange(n, dtype=torch.float64).reshape(-1, 1)  # (n, 1) predecessor sizes
        with_i = (g + s * others) / (s + 1.0)  # (n_sizes, n)
        without_i = (s > 0).to(torch.float64) * others  # (n_sizes, n)
        return size_distribution.to(torch.float64) @ (with_i - without_i)  # (n,)


def fit_surrogate(empty: float, singles: Tensor) -> MeanGainSurrogate:
    """The surrogate from ``v(∅)`` and the ``(n,)`` solo utilities ``v({i})``."""
    return MeanGainSurrogate(empty=empty, gains=singles.to(torch.float64) - empty)


def singleton_masks(n_players: int) -> Tensor:
    """``(n,)`` int64 masks of the one-player coalitions."""
    return torch.ones(n_players, dtype=torch.int64) << torch.arange(n_players)


def begin_control_variate(tracker: QueryTracker) -> MeanGainSurrogate:
    """Evaluate ``v(∅)`` and the solo utilities, fit the surrogate and switch ``tracker`` to
    residuals. The caller adds ``surrogate.semivalue(p)`` to its estimate."""
    n = tracker.n_players
    masks = torch.cat([torch.zeros(1, dtype=torch.int64), singleton_masks(n)])
    values = tracker.raw_utilities(masks)  # (n+1,)
    surrogate = fit_surrogate(float(values[0]), values[1:])
    tracker.subtract(surrogate)
    return surrogate
