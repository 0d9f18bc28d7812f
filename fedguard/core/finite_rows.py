"""Which stacked client updates are entirely finite, without an ``(n, d)`` boolean temporary."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_rows(updates: Tensor) -> Tensor:
    """``(n,)`` bool: rows of ``updates`` (n, d) whose every entry is finite.

    A max and a min reduction per row: NaN propagates through both, and an infinite entry is the
    row's minimum or maximum, so a row is finite exactly when its minimum and maximum are — the
    same answer as ``isfinite(updates).all(dim=1)`` for a fraction of the memory traffic.
    """
    if updates.shape[1] == 0:
        return torch.ones(updates.shape[0], dtype=torch.bool, device=updates.device)
    # amax and amin separately: torch.aminmax is ~15x slower on CPU (torch 2.13)
    return torch.isfinite(updates.amax(dim=1)) & torch.isfinite(updates.amin(dim=1))


__all__ = ["finite_rows"]
