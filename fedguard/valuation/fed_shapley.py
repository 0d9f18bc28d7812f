"""Federated Shapley value: per-round Shapley over the round's participants, summed.

References
----------
.. [1] T. Wang, J. Rausch, C. Zhang, R. Jia, D. Song. "A Principled Approach to Data Valuation for
   Federated Learning." In Federated Learning, LNCS 12500, Springer 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedguard.api import require
from fedguard.valuation.base import Scores, Valuation, validate_common
from fedguard.valuation.exact import ExactShapley
from fedguard.valuation.game import Game, RoundGame, as_round_game
from fedguard.valuation.permutation import PermutationShapley


@dataclass(frozen=True)
class FederatedShapley(Valuation):
    """``φ_i = Σ_r φ_i^{(r)}`` with ``φ^{(r)}`` the Shapley value of ``v_r`` restricted to round
    ``r``'s participants (non-participants get 0 in that round).

    Rounds with at most ``max_exact_participants`` participants are valued exactly (``2^m``
    evaluations); larger rounds by permutation sampling with ``permutations_per_round · m`` queries.
    The standard error combines the sampled rounds' standard errors (independent rounds); the
    interval is normal (``z``) around the sum.
    """

    max_exact_participants: int = 12
    permutations_per_round: int = 32
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        validate_common(None, self.n_bootstrap, self.confidence)
        require(1 <= self.max_exact_participants <= 20, "max_exact_participants", "in 1..20")
        require(self.permutations_per_round >= 2, "permutations_per_round", "at least 2")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        from scipy import stats

        rg = as_round_game(game)
        n = rg.n_players
        values = torch.zeros(n, dtype=torch.float64)
        variance = torch.zeros(n, dtype=torch.float64)
        evaluations = queries = 0
        for r in range(rg.n_rounds):
            if not rg.participants(r):
                continue  # nobody took part: no values, no observations
            view = rg.round_view(r)
            ids = torch.tensor(view.players, dtype=torch.int64)
            if view.n_players <= self.max_exact_participants:
                scores = ExactShapley(max_players=20).fit(view, generator)
            else:
                scores = PermutationShapley(
                    budget=self.permutations_per_round * view.n_players,
                    n_bootstrap=self.n_bootstrap,
                    confidence=self.confidence,
                ).fit(view, generator)
            values[ids] += scores.values
            variance[ids] += scores.std_errors**2
            evaluations += scores.n_evaluations
            queries += scores.n_queries
        se = variance.sqrt()
        z = float(stats.norm.ppf(0.5 + self.confidence / 2))
        return Scores(
            method="fed_shapley",
            values=values,
            std_errors=se,
            lower=values - z * se,
            upper=values + z * se,
            n_evaluations=evaluations,
            n_queries=queries,
            target="shapley",
            confidence=self.confidence,
            evaluation_unit="round-coalition",
            info={"exact": bool(math.isclose(float(se.sum()), 0.0))},
        )
