"""Exact Shapley values over all ``2**n`` coalitions.

References
----------
.. [1] L. S. Shapley. "A Value for n-Person Games." Contributions to the Theory of Games II, 1953.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.valuation.base import Scores, Valuation, deterministic_scores
from fedguard.valuation.game import Game, QueryTracker, RoundGame, all_masks, as_game
from fedguard.valuation.kernels import exact_shapley


@dataclass(frozen=True)
class ExactShapley(Valuation):
    """``φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S))`` from the full utility table.

    All ``2**n`` utilities are requested in one batch (reconstruction games evaluate them as stacked
    models), then combined by the vectorized semivalue kernel
    (:func:`fedguard.valuation.kernels.semivalue_from_table`). ``max_players`` caps ``n``: beyond it
    the ``2**n`` evaluations are refused with a suggestion of a sampling method.
    """

    max_players: int = 16

    def __post_init__(self) -> None:
        require(1 <= self.max_players <= 24, "max_players", "an integer in 1..24")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        if n > self.max_players:
            raise ConfigError(
                f"exact Shapley needs 2**{n} = {1 << n} utility evaluations for {n} clients, "
                f"above max_players={self.max_players}; use a sampling method such as "
                "'stratified', 'permutation' or 'kernel_shap' with --budget."
            )
        tracker = QueryTracker(g)
        values = tracker.utilities(all_masks(n))  # (2**n,)
        phi = exact_shapley(values)
        return deterministic_scores(
            "exact",
            phi,
            n_evaluations=tracker.n_distinct,
            n_queries=tracker.n_queries,
            target="shapley",
            info={"grand_utility": float(values[-1]), "empty_utility": float(values[0])},
        )
