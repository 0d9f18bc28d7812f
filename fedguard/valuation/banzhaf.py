"""Banzhaf values by maximum sample reuse (MSR) with complementary pairs.

References
----------
.. [1] J. T. Wang, R. Jia. "Data Banzhaf: A Robust Data Valuation Framework for Machine Learning."
   AISTATS 2023 (maximum sample reuse).
.. [2] J. F. Banzhaf. "Weighted Voting Doesn't Work." Rutgers Law Review 19, 1965.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedguard.valuation.base import (
    SampledValuation,
    Scores,
    check_budget,
    resolve_budget,
    scores_from_units,
)
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game, bits_to_masks


@dataclass(frozen=True)
class Banzhaf(SampledValuation):
    """``β_i = E[v(S) | i ∈ S] − E[v(S) | i ∉ S]`` with ``S`` uniform over all coalitions.

    MSR: every sampled coalition serves every player (Wang & Jia 2023). Coalitions are drawn in
    complementary pairs ``(S, N∖S)`` (each ``S`` still uniform), so every player is in exactly one
    member of each pair and the estimate is the mean over pairs of ``±(v(S) − v(N∖S))``; the pair is
    the bootstrap unit. ``budget`` = utility queries (two per pair), ``32·n`` if unset.
    """

    target = "banzhaf"

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        check_budget(budget, n, minimum=2, method="banzhaf")
        n_pairs = budget // 2
        tracker = QueryTracker(g)
        inside = torch.rand(n_pairs, n, generator=generator) < 0.5  # (u, n)
        masks = bits_to_masks(inside)  # (u,)
        values = tracker.utilities(torch.cat([masks, g.grand_mask ^ masks])).reshape(2, n_pairs)
        sign = inside.to(torch.float64) * 2.0 - 1.0  # (u, n)
        units = sign * (values[0] - values[1]).reshape(-1, 1)  # (u, n)
        return scores_from_units(
            "banzhaf", units, tracker, "banzhaf", self.confidence, self.n_bootstrap, generator
        )
