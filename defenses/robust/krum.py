"""Krum."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound, RobustAggregator, RuleOutput
from .kernels import krum_scores, pairwise_sq_distances


@dataclass(frozen=True)
class Krum(LinearByzantineBound, RobustAggregator):
    """Krum: output the update whose n − f − 2 nearest neighbours are closest.

    score(i) = Σ_{j ∈ N_i} ‖x_i − x_j‖², N_i the n − f − 2 nearest *other* updates; the update with
    the lowest score is returned (ties → lowest row index). Convention: the paper's n − f − 2
    neighbours (some libraries, e.g. ByzFL, use n − f − 1). Needs n > 2f + 2. All pairwise
    distances come from one Gram matrix. ``scores`` are the Krum scores, ``weights`` one-hot, and
    every row that was not selected is ``flagged`` (dropped) — use ``scores`` for AUROC.
    Client weights are ignored.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent." NeurIPS 2017.
    """

    byzantine_factor = 2
    min_clients_at_0 = 3
    cohort_bound = "n > 2f + 2"

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        scores = krum_scores(pairwise_sq_distances(updates), n - n_byzantine - 2)  # (n,)
        best = int(torch.argmin(scores))
        one_hot = torch.zeros(n, dtype=torch.float64)
        one_hot[best] = 1.0
        return RuleOutput(
            aggregate=updates[best].clone(),
            weights=one_hot,
            scores=scores,
            flagged=tuple(i for i in range(n) if i != best),
        )
