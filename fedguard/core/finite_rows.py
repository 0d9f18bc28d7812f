"""Which stacked client updates are entirely finite, without an ``(n, d)`` boolean temporary."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_rows(updates: Tensor) -> Tensor:
    """``(n,)`` bool: rows of ``updates`` (n, d) whose every entry is finite.

    One pass first: a row sum is finite only when every entry is (a NaN stays NaN, an infinity
    stays infinite or meets its opposite in a NaN), so rows with a finite sum are settled. A
    non-finite sum can also come from finite entries whose sum overflows; those rows alone are
    checked again with a max and a min reduction — NaN propagates through both, and an infinite
    entry is the row's minimum or maximum, so a row is finite exactly when its minimum and
    maximum are. The answer is ``isfinite(updates).all(dim=1)``'s for a fraction of the memory
    traffic (one read of the updates when every row is finite, the common case).
    """
    if updates.shape[1] == 0:
        return torch.ones(updates.shape[0], dtype=torch.bool, device=updates.device)
    finite = torch.isfinite(updates.sum(dim=1))  # (n,)
    if bool(finite.all()):
        return finite
    unsure = (~finite).nonzero().flatten()  # rows with a non-finite sum (bad entry or overflow)
    rows = updates[unsure]
    # amax and amin separately: torch.aminmax is ~15x slower on CPU (torch 2.13)
    finite[unsure] = torch.isfinite(rows.amax(dim=1)) & torch.isfinite(rows.amin(dim=1))
    return finite


__all__ = ["finite_rows"]
