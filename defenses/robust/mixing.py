"""Shared driver of the pre-aggregators: each is a linear mixing of the update rows.

A pre-aggregator maps ``(n, d)`` updates to ``(m, d)`` rows ``values = mixing @ updates`` with a
``(m, n)`` mixing matrix that depends on the updates (nearest neighbours, buckets, clipping
factors). Exposing the matrix lets :func:`defenses.robust.compose.compose` map the aggregator's
per-row weights, scores and flags back to the clients. Rows holding NaN/inf are dropped (their
mixing column is zero) so one faulty client cannot contaminate the others' mixed rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import PreAggregator
from fedguard.core.update_checks import check_updates
from fedguard.types import AggregationContext

from .base import CohortBounded


@dataclass(frozen=True)
class Mixed:
    """Pre-aggregated rows and how they were formed."""

    values: Tensor  # (m, d)
    mixing: Tensor  # (m, n) float64, zero columns for dropped (non-finite) rows


class MixingPreAggregator(CohortBounded, PreAggregator):
    """Base of the pre-aggregators in :mod:`defenses.robust`."""

    #: True when output row i is a rescaling of input row i alone (weights can pass through).
    row_preserving: ClassVar[bool] = False
    component_kind: ClassVar[str] = "pre-aggregator"

    def output_size(self, n_clients: int) -> int:
        """Number of rows produced from ``n_clients`` rows."""
        return n_clients

    def _mix(self, updates: Tensor, n_byzantine: int, ctx: AggregationContext) -> Tensor:
        """``(m, n)`` mixing matrix for finite ``(n, d)`` updates."""
        raise NotImplementedError  # abstract

    def mix(self, updates: Tensor, ctx: AggregationContext) -> Mixed:
        """Mixed rows and the mixing matrix (see the module docstring)."""
        x = check_updates(updates, ctx.global_params, self.rule_name)  # (n, d)
        n = x.shape[0]
        finite = torch.isfinite(x).all(dim=1)
        keep = finite.nonzero().flatten()
        k_faulty = n - keep.numel()
        if keep.numel() == 0:
            return Mixed(x.new_zeros((0, x.shape[1])), torch.zeros((0, n), dtype=torch.float64))
        f_left = max(self.resolve_byzantine(ctx.n_byzantine) - k_faulty, 0)
        f_left = min(f_left, max(keep.numel() - 1, 0))
        local = self._mix(x[keep], f_left, ctx)  # (m, n_kept)
        mixing = torch.zeros((local.shape[0], n), dtype=torch.float64)
        mixing[:, keep] = local.to(torch.float64)
        values = local.to(x.dtype) @ x[keep]  # (m, d)
        return Mixed(values=values, mixing=mixing)

    def __call__(self, updates: Tensor, ctx: AggregationContext) -> Tensor:
        self.check_cohort(updates.shape[0], ctx.n_byzantine)
        return self.mix(updates, ctx).values
