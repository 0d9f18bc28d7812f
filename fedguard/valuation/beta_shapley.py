"""Beta(α, β) Shapley values by weighted permutation sampling.

References
----------
.. [1] Y. Kwon, J. Zou. "Beta Shapley: a Unified and Noise-reduced Data Valuation Framework for
   Machine Learning." AISTATS 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedguard.api import require
from fedguard.valuation.base import (
    Scores,
    Valuation,
    check_budget,
    resolve_budget,
    scores_from_units,
    validate_common,
)
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game
from fedguard.valuation.kernels import beta_size_distribution
from fedguard.valuation.permutation import antithetic_group, permutation_marginals


@dataclass(frozen=True)
class BetaShapley(Valuation):
    """Semivalue with size distribution beta-binomial(n−1, β, α) (Kwon & Zou's ``w_{α,β}``).

    Convention: ``alpha`` and ``beta`` as in Kwon & Zou, ``Beta(16, 1)`` (the default) emphasizes
    small coalitions; ``Beta(1, 1)`` is the Shapley value. In a uniform permutation a player's
    predecessor set has size ``s`` with probability ``1/n``, so weighting the marginal at size ``s``
    by ``n·p(s)`` gives an unbiased estimate from every permutation (each permutation serves every
    player); antithetic pairs (a permutation and its reverse) are the bootstrap unit.
    """

    alpha: float = 16.0
    beta: float = 1.0
    budget: int | None = None
    antithetic: bool = True
    n_bootstrap: int = 200
    confidence: float = 0.95

    target = "beta"

    def __post_init__(self) -> None:
        validate_common(self.budget, self.n_bootstrap, self.confidence)
        require(self.alpha > 0, "alpha", "a positive number")
        require(self.beta > 0, "beta", "a positive number")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        check_budget(budget, n, minimum=n + 1, method="beta_shapley")
        tracker = QueryTracker(g)
        empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
        group = antithetic_group(self.antithetic, budget - 2, n)
        perms, marginals = permutation_marginals(
            tracker, empty, grand, budget - 2, group, generator
        )
        position = torch.argsort(perms, dim=1)  # (m, n) size of each player's predecessor set
        weights = n * beta_size_distribution(n, self.alpha, self.beta)[position]  # (m, n)
        units = (weights * marginals).reshape(-1, group, n).mean(dim=1)
        target = f"beta({self.alpha:g},{self.beta:g})"
        return scores_from_units(
            "beta_shapley", units, tracker, target, self.confidence, self.n_bootstrap, generator
        )
