"""Bulyan."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound, RobustAggregator, RuleOutput
from .kernels import (
    coordinate_median,
    krum_scores,
    mean_closest_to_centre,
    pairwise_sq_distances,
)


def bulyan_selection(sq_dist: Tensor, n_byzantine: int, n_selected: int) -> list[int]:
    """Iterated Krum: pick ``n_selected`` rows one at a time, each the Krum winner of those left.

    Each step runs Krum on the r rows still unselected with r − f − 2 neighbours (the paper's
    convention, see :class:`~defenses.robust.krum.Krum`), reusing one distance matrix.
    """
    n = sq_dist.shape[0]
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(n_selected):
        idx = torch.tensor(remaining)
        sub = sq_dist[idx][:, idx]  # (r, r)
        scores = krum_scores(sub, len(remaining) - n_byzantine - 2)
        best = remaining[int(torch.argmin(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


@dataclass(frozen=True)
class Bulyan(LinearByzantineBound, RobustAggregator):
    """Bulyan: iterated Krum selection, then a coordinate-wise average around the median.

    1. Select θ = n − 2f updates by repeated Krum (each time on the updates not yet selected).
    2. Per coordinate, average the β = θ − 2f selected values closest to their median.

    Needs n ≥ 4f + 3. Client weights are ignored. ``weights`` is each client's share of the averaged
    values, ``scores`` the Krum scores on the full set; rows never selected in step 1 are
    ``flagged``.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    El Mhamdi, Guerraoui, Rouault. "The Hidden Vulnerability of Distributed Learning in
    Byzantium." ICML 2018.
    """

    byzantine_factor = 4
    min_clients_at_0 = 3
    cohort_bound = "n >= 4f + 3"

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        f = n_byzantine
        sq_dist = pairwise_sq_distances(updates)  # (n, n)
        theta = n - 2 * f
        beta = theta - 2 * f
        chosen = bulyan_selection(sq_dist, f, theta)
        chosen_t = torch.tensor(chosen)
        selected = updates[chosen_t]  # (theta, d)
        means, local_shares = mean_closest_to_centre(selected, coordinate_median(selected), beta)
        shares = torch.zeros(n, dtype=torch.float64)
        shares[chosen_t] = local_shares
        return RuleOutput(
            aggregate=means,
            weights=shares,
            scores=krum_scores(sq_dist, n - f - 2),
            flagged=tuple(sorted(set(range(n)) - set(chosen))),
        )
