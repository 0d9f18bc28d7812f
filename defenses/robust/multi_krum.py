"""Multi-Krum."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput, validate_byzantine
from .kernels import krum_scores, pairwise_sq_distances, weighted_mean


@dataclass(frozen=True)
class MultiKrum(RobustAggregator):
    """Multi-Krum: mean of the m updates with the lowest Krum scores.

    Krum scores use the paper's n − f − 2 nearest other updates (see :class:`Krum`); m = n − f by
    default. The selected updates are averaged with the client weights (uniform when none).
    Needs n > 2f + 2. ``scores`` are the Krum scores; the n − m unselected rows are ``flagged``.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.
    n_selected : int | None
        m, how many updates are averaged; ``None`` means n − f.

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent." NeurIPS 2017.
    """

    n_byzantine: int | None = None
    n_selected: int | None = None
    cohort_bound = "n > 2f + 2 (and n >= n_selected)"

    def __post_init__(self) -> None:
        validate_byzantine(self.n_byzantine)
        require(
            self.n_selected is None or self.n_selected >= 1,
            "n_selected",
            "an integer >= 1, or null for n − n_byzantine",
        )

    def min_clients(self, n_byzantine: int) -> int:
        return max(2 * n_byzantine + 3, self.n_selected or 1)

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        # After faulty rows were dropped fewer than n_selected rows may remain: keep them all.
        m = min(self.n_selected, n) if self.n_selected is not None else n - n_byzantine
        scores = krum_scores(pairwise_sq_distances(updates), n - n_byzantine - 2)  # (n,)
        order = torch.argsort(scores, stable=True)
        chosen = order[:m]
        w = torch.ones(n, dtype=torch.float64) if weights is None else weights.to(torch.float64)
        mask = torch.zeros(n, dtype=torch.float64)
        mask[chosen] = 1.0
        eff = w * mask
        eff = eff / eff.sum() if bool(eff.sum() > 0) else mask / mask.sum()
        return RuleOutput(
            aggregate=weighted_mean(updates[chosen], eff[chosen]),
            weights=eff,
            scores=scores,
            flagged=tuple(sorted(int(i) for i in order[m:])),
        )
