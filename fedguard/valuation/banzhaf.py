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
from torch import Tensor

from fedguard.valuation.base import (
    SampledValuation,
    Scores,
    check_budget,
    resolve_budget,
    scores_from_units,
    shift_scores,
)
from fedguard.valuation.control_variate import begin_control_variate
from fedguard.valuation.game import (
    Game,
    QueryTracker,
    RoundGame,
    as_game,
    bits_to_masks,
    draw_within_budget,
)
from fedguard.valuation.kernels import banzhaf_size_distribution


@dataclass(frozen=True)
class Banzhaf(SampledValuation):
    """``β_i = E[v(S) | i ∈ S] − E[v(S) | i ∉ S]`` with ``S`` uniform over all coalitions.

    MSR: every sampled coalition serves every player (Wang & Jia 2023). Coalitions are drawn in
    complementary pairs ``(S, N∖S)`` (each ``S`` still uniform), so every player is in exactly one
    member of each pair and the estimate is the mean over pairs of ``±(v(S) − v(N∖S))``; the pair is
    the bootstrap unit. ``budget`` = distinct utility evaluations, ``32·n`` if unset (a repeated
    pair is free); ``control_variate`` estimates the residual of the FedAvg first-order surrogate.
    """

    target = "banzhaf"

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        use_cv = self.control_variate and n > 1
        check_budget(budget, n, minimum=min((n + 3) if use_cv else 2, 1 << n), method="banzhaf")
        tracker = QueryTracker(g)
        surrogate = begin_control_variate(tracker) if use_cv else None

        def draw() -> tuple[Tensor, Tensor]:
            inside = torch.rand(1, n, generator=generator) < 0.5  # (1, n)
            mask = bits_to_masks(inside)
            return inside[0], torch.cat([mask, g.grand_mask ^ mask])

        inside = torch.stack(draw_within_budget(tracker, budget, draw, max_units=budget))  # (u, n)
        masks = bits_to_masks(inside)  # (u,)
        n_pairs = int(masks.shape[0])
        values = tracker.utilities(torch.cat([masks, g.grand_mask ^ masks])).reshape(2, n_pairs)
        sign = inside.to(torch.float64) * 2.0 - 1.0  # (u, n)
        units = sign * (values[0] - values[1]).reshape(-1, 1)  # (u, n)
        scores = scores_from_units(
            "banzhaf", units, tracker, "banzhaf", self.confidence, self.n_bootstrap, generator
        )
        if surrogate is None:
            return scores
        return shift_scores(scores, surrogate.semivalue(banzhaf_size_distribution(n)))
