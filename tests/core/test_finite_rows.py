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


def test_rows_whose_sum_overflows_are_still_finite() -> None:
    # the one-pass sum overflows to ±inf (or inf − inf = NaN) on these finite rows; the exact
    # second look must keep them
    big = torch.finfo(torch.float32).max
    x = torch.tensor(
        [
            [big, big, 0.0],  # sum +inf, entries finite
            [-big, -big, 1.0],  # sum -inf, entries finite
            [big, big, -float("inf")],  # a real infinity next to an overflow
            [1.0, float("nan"), 2.0],
            [1.0, 2.0, 3.0],
        ]
    )
    assert not torch.isfinite(x[:2].sum(dim=1)).any()  # the case the fallback exists for
    assert finite_rows(x).tolist() == [True, True, False, False, True]
    assert torch.equal(finite_rows(x), torch.isfinite(x).all(dim=1))
