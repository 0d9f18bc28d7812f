"""Bucketing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .mixing import MixingPreAggregator


@dataclass(frozen=True)
class Bucketing(MixingPreAggregator):
    """Bucketing: shuffle the updates, average them in buckets of ``bucket_size``.

    The permutation comes from the context generator. ⌈n/s⌉ buckets; the last one holds the
    remainder when s does not divide n. Each Byzantine client lands in one bucket, so the aggregator
    that follows still faces at most f bad rows, now out of ⌈n/s⌉ (compose e.g.
    ``bucketing+centered_clipping``; the follower's bound is checked on ⌈n/s⌉ rows).

    Parameters
    ----------
    bucket_size : int
        s ≥ 1.

    References
    ----------
    Karimireddy, He, Jaggi. "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing."
    ICLR 2022.
    """

    bucket_size: int = 2

    def __post_init__(self) -> None:
        require(self.bucket_size >= 1, "bucket_size", "an integer >= 1")

    def output_size(self, n_clients: int) -> int:
        return -(-n_clients // self.bucket_size)

    def _mix(self, updates: Tensor, n_byzantine: int, ctx: AggregationContext) -> Tensor:
        n = updates.shape[0]
        m = self.output_size(n)
        order = torch.randperm(n, generator=ctx.generator)  # (n,)
        bucket_of = torch.empty(n, dtype=torch.long)
        bucket_of[order] = torch.arange(n) // self.bucket_size
        sizes = torch.bincount(bucket_of, minlength=m).to(torch.float64)  # (m,)
        mixing = torch.zeros((m, n), dtype=torch.float64)
        mixing[bucket_of, torch.arange(n)] = 1.0 / sizes[bucket_of]
        return mixing
