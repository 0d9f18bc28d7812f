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
    scores_from_clustered_units,
    shift_scores,
    validate_common,
)
from fedguard.valuation.control_variate import begin_control_variate
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game
from fedguard.valuation.kernels import beta_size_distribution
from fedguard.valuation.permutation import (
    PermutationShapley,
    permutation_units,
    sampled_marginals,
)


@dataclass(frozen=True)
class BetaShapley(Valuation):
    """Semivalue with size distribution beta-binomial(n−1, β, α) (Kwon & Zou's ``w_{α,β}``).

    Convention: ``alpha`` and ``beta`` as in Kwon & Zou, ``Beta(16, 1)`` (the default) emphasizes
    small coalitions; ``Beta(1, 1)`` is the Shapley value. In a uniform permutation a player's
    predecessor set has size ``s`` with probability ``1/n``, so weighting the marginal at size ``s``
    by ``n·p(s)`` gives an unbiased estimate from every permutation (each permutation serves every
    player). Permutations come from :class:`~fedguard.valuation.permutation.CyclicPermutations`
    (every player at every position once per block, which stratifies the sizes too), in antithetic
    pairs (the bootstrap unit); ``budget`` = distinct utility evaluations; ``control_variate`` as
    in :class:`~fedguard.valuation.permutation.PermutationShapley`.
    """

    alpha: float = 16.0
    beta: float = 1.0
    budget: int | None = None
    antithetic: bool = True
    control_variate: bool = True
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
        minimum = PermutationShapley(
            antithetic=self.antithetic, control_variate=self.control_variate
        ).minimum_budget(n)
        check_budget(budget, n, minimum=minimum, method="beta_shapley")
        tracker = QueryTracker(g)
        sizes = beta_size_distribution(n, self.alpha, self.beta)  # (n,)
        surrogate = begin_control_variate(tracker) if self.control_variate and n > 1 else None
        empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
        perms, blocks = permutation_units(tracker, budget, self.antithetic, generator)
        flat = perms.reshape(-1, n)  # (m, n)
        if n == 1:
            marginals = torch.full((flat.shape[0], 1), grand - empty, dtype=torch.float64)
        else:
            marginals = sampled_marginals(tracker, flat, empty, grand)  # (m, n)
        position = torch.argsort(flat, dim=1)  # (m, n) size of each player's predecessor set
        weights = n * sizes[position]  # (m, n)
        units = (weights * marginals).reshape(perms.shape).mean(dim=1)  # (u, n)
        target = f"beta({self.alpha:g},{self.beta:g})"
        scores = scores_from_clustered_units(
            "beta_shapley",
            units,
            blocks,
            tracker,
            target,
            self.confidence,
            self.n_bootstrap,
            generator,
        )
        return scores if surrogate is None else shift_scores(scores, surrogate.semivalue(sizes))
