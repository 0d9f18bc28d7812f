"""RQM client transform: exact output distribution, unbiasedness, events and bits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from fedguard.defenses.dp.rqm import RQM, rqm_quantize
from fedguard.privacy.events import ClientEvent, RandomizedQuantization
from fedguard.privacy.rqm import rqm_distribution, rqm_levels
from tests.dp.helpers import transform_context


@pytest.mark.parametrize(("x", "levels", "q"), [(0.013, 8, 0.4), (-0.049, 5, 0.7), (0.0, 2, 1.0)])
def test_sampled_levels_follow_the_exact_distribution(x: float, levels: int, q: float) -> None:
    c, pad, draws = 0.05, 0.03, 40_000
    g = torch.Generator().manual_seed(0)
    u = torch.rand(3, draws, generator=g, dtype=torch.float64)
    index, values = rqm_quantize(torch.full((draws,), x), c, pad, levels, q, u)
    torch.testing.assert_close(values, torch.from_numpy(rqm_levels(c, pad, levels))[index])
    counts = np.bincount(index.numpy(), minlength=levels)
    exact = rqm_distribution(np.array([x]), c, pad, levels, q)[0]  # (m,) fedguard.privacy oracle
    support = exact > 0
    assert counts[~support].sum() == 0
    if support.sum() > 1:
        assert scipy.stats.chisquare(counts[support], exact[support] * draws).pvalue > 1e-3


def test_unbiased_after_clipping() -> None:
    c, draws = 0.05, 50_000
    g = torch.Generator().manual_seed(1)
    xs = torch.tensor([-0.2, -0.05, -0.031, 0.0, 0.017, 0.049, 0.3])  # outside values clip to ±c
    u = torch.rand(3, draws, len(xs), generator=g, dtype=torch.float64)
    _, values = rqm_quantize(xs.expand(draws, -1), c, 0.02, 6, 0.5, u)
    mean, sd = values.mean(0), values.std(0)
    target = xs.clamp(-c, c).double()
    z = (mean - target) / (sd / math.sqrt(draws)).clamp_min(1e-12)
    assert bool((z.abs() < 4.5).all()), z


def test_transform_events_bits_and_streams() -> None:
    mech = RQM(clip=0.05, padding=0.05, levels=16, keep_probability=0.5)
    ctx = transform_context(4, 30)
    out = mech(torch.randn(4, 30) * 0.03, ctx)
    levels = torch.from_numpy(rqm_levels(0.05, 0.05, 16)).float()
    assert bool(torch.isin(out.values, levels).all())
    assert out.state["bits_per_coordinate"] == 4.0 and out.state["bits_per_client"] == 120.0
    assert len(out.events) == 4 and all(isinstance(e, ClientEvent) for e in out.events)
    assert out.events[2].client == 2 and out.events[2].event == RandomizedQuantization(
        0.05, 0.05, 16, 0.5, coordinates=30
    )
    again = mech(torch.randn(4, 30) * 0.03, ctx)
    assert again.events == out.events
