"""Adaptive robust clipping (ARC)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound
from .kernels import clip_rows, row_norms
from .mixing import MixingPreAggregator


def arc_clip_count(n_clients: int, n_byzantine: int) -> int:
    """k = ⌊2 (f/n) (n − f)⌋, the number of largest-norm updates ARC clips."""
    return (2 * n_byzantine * (n_clients - n_byzantine)) // n_clients


@dataclass(frozen=True)
class ARC(LinearByzantineBound, MixingPreAggregator):
    """Adaptive robust clipping: clip the k largest updates to the (k+1)-th largest norm.

    k = ⌊2(f/n)(n − f)⌋ (integer arithmetic); with f = 0 nothing is clipped. Output ``(n, d)``.
    Needs n > f.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan. "Boosting Robustness by Clipping Gradients
    in Distributed Learning." arXiv:2405.14432, 2024 (ARC).
    """

    byzantine_factor = 1
    min_clients_at_0 = 1
    row_preserving = True
    cohort_bound = "n > f"

    def _mix(self, updates: Tensor, n_byzantine: int, ctx: AggregationContext) -> Tensor:
        n = updates.shape[0]
        k = min(arc_clip_count(n, n_byzantine), n - 1)
        if k == 0:
            return torch.eye(n, dtype=torch.float64)
        norms = row_norms(updates)
        threshold = torch.sort(norms, descending=True).values[k]  # (k+1)-th largest
        _, factors = clip_rows(updates, threshold)
        return torch.diag(factors.to(torch.float64))
