"""KernelSHAP: Shapley values as a constrained weighted least-squares regression.

References
----------
.. [1] S. M. Lundberg, S.-I. Lee. "A Unified Approach to Interpreting Model Predictions."
   NeurIPS 2017.
.. [2] I. Covert, S.-I. Lee. "Improving KernelSHAP: Practical Shapley Value Estimation via Linear
   Regression." AISTATS 2021 (paired sampling, closed-form constrained solution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.valuation.base import (
    SampledValuation,
    Scores,
    bootstrap_indices,
    check_budget,
    resolve_budget,
    sampled_scores,
)
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game, bits_to_masks


def shapley_kernel_sizes(n_players: int) -> Tensor:
    """``(n−1,)`` probabilities of coalition sizes ``1..n−1`` under the Shapley kernel,
    ``∝ (n−1)/(k(n−k))`` (per-coalition weight times ``C(n, k)``)."""
    k = torch.arange(1, n_players, dtype=torch.float64)
    w = 1.0 / (k * (n_players - k))
    return w / w.sum()


def sample_kernel_coalitions(count: int, n_players: int, generator: torch.Generator) -> Tensor:
    """``(count, n)`` bool coalitions drawn from the Shapley kernel distribution."""
    sizes = torch.multinomial(shapley_kernel_sizes(n_players), count, True, generator=generator) + 1
    order = torch.argsort(torch.rand(count, n_players, generator=generator), dim=1)  # (c, n)
    ranks = torch.argsort(order, dim=1)  # (c, n) position of each player
    return ranks < sizes.reshape(-1, 1)


def constrained_solution(gram: Tensor, moment: Tensor, total: float) -> Tensor:
    """Solve ``min φᵀAφ − 2bᵀφ`` s.t. ``1ᵀφ = total`` for batches ``(..., n, n)``, ``(..., n)``.

    Uses the KKT system ``[[A, 1], [1ᵀ, 0]] [φ; λ] = [b; total]`` by least squares, which stays
    defined when the sampled ``A`` is rank-deficient (few samples).
    """
    n = gram.shape[-1]
    batch = gram.shape[:-2]
    kkt = torch.zeros((*batch, n + 1, n + 1), dtype=torch.float64)
    kkt[..., :n, :n] = gram
    kkt[..., :n, n] = 1.0
    kkt[..., n, :n] = 1.0
    rhs = torch.zeros((*batch, n + 1, 1), dtype=torch.float64)
    rhs[..., :n, 0] = moment
    rhs[..., n, 0] = total
    solution = torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution
    return solution[..., :n, 0]


@dataclass(frozen=True)
class KernelShap(SampledValuation):
    """KernelSHAP with paired sampling and the efficiency constraint.

    Coalitions ``S`` are drawn from the Shapley kernel distribution together with their complements
    (Covert & Lee's paired sampling); the estimate solves ``min Σ (v(S) − v(∅) − Σ_{i∈S} φ_i)²``
    subject to ``Σ φ = v(N) − v(∅)`` using the sampled ``Â = mean zzᵀ`` (the original KernelSHAP,
    exact for additive games). Bootstrap unit: a complementary pair. ``budget`` = utility queries.
    """

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        check_budget(budget, n, minimum=n + 2, method="kernel_shap")
        tracker = QueryTracker(g)
        empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
        if n == 1:
            value = torch.tensor([grand - empty], dtype=torch.float64)
            return sampled_scores(
                "kernel_shap",
                value,
                value.reshape(1, 1).expand(2, 1),
                2,
                2,
                2,
                "shapley",
                self.confidence,
            )
        n_pairs = (budget - 2) // 2
        z = sample_kernel_coalitions(n_pairs, n, generator)  # (u, n)
        z_all = torch.cat([z, ~z])  # (2u, n)
        y = tracker.utilities(bits_to_masks(z_all)) - empty  # (2u,)
        zf = z_all.to(torch.float64).reshape(2, n_pairs, n)
        yf = y.reshape(2, n_pairs)
        outer = torch.einsum("pui,puj->uij", zf, zf)  # (u, n, n) per-pair contribution to A
        cross = torch.einsum("pui,pu->ui", zf, yf)  # (u, n) per-pair contribution to b
        estimate = constrained_solution(outer.mean(0), cross.mean(0), grand - empty)
        idx = bootstrap_indices(n_pairs, self.n_bootstrap, generator)  # (B, u)
        replicates = constrained_solution(outer[idx].mean(1), cross[idx].mean(1), grand - empty)
        return sampled_scores(
            "kernel_shap",
            estimate,
            replicates,
            n_units=n_pairs,
            n_evaluations=tracker.n_distinct,
            n_queries=tracker.n_queries,
            target="shapley",
            confidence=self.confidence,
        )
