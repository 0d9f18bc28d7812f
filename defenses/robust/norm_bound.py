"""Norm bounding."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import clip_rows, row_norms, weighted_mean


@dataclass(frozen=True)
class NormBound(RobustAggregator):
    """Clip every update to norm ``clip_norm``, then take the (client-weighted) mean.

    ``scores`` are the update norms; rows that had to be clipped (norm above the bound) are
    ``flagged`` as suspicious, though they still take part, scaled down. ``weights`` are the client
    weights normalized (the clipping scales the row, it does not re-weight it).

    Parameters
    ----------
    clip_norm : float
        The norm bound M > 0.

    References
    ----------
    Sun, Kairouz, Suresh, McMahan. "Can You Really Backdoor Federated Learning?"
    arXiv:1911.07963, 2019.
    """

    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        require(self.clip_norm > 0, "clip_norm", "a positive number")

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        norms = row_norms(updates)
        clipped, _ = clip_rows(updates, self.clip_norm)
        w = weights.double() if weights is not None else norms.new_ones(n).double()
        w = w / w.sum() if bool(w.sum() > 0) else norms.new_ones(n).double() / n
        return RuleOutput(
            aggregate=weighted_mean(clipped, w),
            weights=w,
            scores=norms,
            flagged=tuple(int(i) for i in (norms > self.clip_norm).nonzero().flatten()),
        )
