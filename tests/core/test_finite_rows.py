"""finite_rows equals isfinite(...).all(dim=1) wherever the NaN or infinity sits."""

from __future__ import annotations

import torch

from fedguard.core.finite_rows import finite_rows


def test_finite_rows_equals_elementwise_check() -> None:
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = (
            torch.randn(300, 37 + 64 * (dtype == torch.float32), generator=g, dtype=dtype) * 1e30
        )  # huge but finite values
        rows = torch.randperm(300, generator=g)[:120]
        cols = torch.randint(0, x.shape[1], (120,), generator=g)
        bad = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
        x[rows, cols] = bad[torch.arange(120) % 3]
        x[rows[:10], 0] = float("nan")  # several bad values in one row
        expected = torch.isfinite(x).all(dim=1)
        assert torch.equal(finite_rows(x), expected)
        assert int(expected.sum()) == 180  # the test plants what it claims
    assert torch.equal(finite_rows(torch.zeros(3, 0)), torch.ones(3, dtype=torch.bool))
