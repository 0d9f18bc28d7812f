"""Leave-one-out values ``v(N) − v(N ∖ {i})``.

References
----------
.. [1] R. D. Cook. "Detection of Influential Observation in Linear Regression." Technometrics, 1977.
.. [2] A. Ghorbani, J. Zou. "Data Shapley: Equitable Valuation of Data for Machine Learning."
   ICML 2019 (leave-one-out as the baseline of data valuation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedguard.valuation.base import Scores, Valuation, deterministic_scores
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game


@dataclass(frozen=True)
class LeaveOneOut(Valuation):
    """``φ_i = v(N) − v(N ∖ {i})`` with ``n + 1`` evaluations (not efficient: Σφ ≠ v(N) − v(∅))."""

    target = "leave_one_out"

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        grand = g.grand_mask
        drop_one = grand ^ (torch.ones(n, dtype=torch.int64) << torch.arange(n))  # (n,)
        tracker = QueryTracker(g)
        values = tracker.utilities(torch.cat([torch.tensor([grand]), drop_one]))  # (n+1,)
        return deterministic_scores(
            "leave_one_out",
            values[0] - values[1:],
            n_evaluations=tracker.n_distinct,
            n_queries=tracker.n_queries,
            target="leave_one_out",
        )
