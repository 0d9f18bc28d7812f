"""Adaptive clipping (Andrew et al. 2021): noise split, quantile tracking, events."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from fedguard.defenses.dp.adaptive_clipping import AdaptiveClipping, update_noise_multiplier
from fedguard.errors import ConfigError
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.events import (
    Composed,
    Sampled,
    effective_gaussian_multiplier,
    sampled_gaussian,
)
from tests.dp.helpers import transform_context


def test_noise_split_keeps_the_total_multiplier() -> None:
    for z, sigma_b in [(1.0, 5.0), (0.5, 0.3), (2.0, 1.01)]:
        z_update = update_noise_multiplier(z, sigma_b)
        # two Gaussian queries on the same sample: z_eff^-2 = z_Δ^-2 + (2σ_b)^-2
        assert (z_update**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(z)
        assert z_update > z
    with pytest.raises(ConfigError, match="count_noise_stddev"):
        AdaptiveClipping(noise_multiplier=2.0, count_noise_stddev=1.0)


def test_event_records_both_queries_and_accounts_as_z() -> None:
    mech = AdaptiveClipping(noise_multiplier=1.1, count_noise_stddev=2.0, initial_clip_norm=0.5)
    ctx = transform_context(10, 20, rate=0.01, population=1000)
    (event,) = mech(torch.randn(10, 20), ctx).events
    assert isinstance(event, Sampled) and isinstance(event.event, Composed)
    count, update = event.event.events
    assert count.sensitivity == 0.5 and count.noise_stddev == pytest.approx(2.0)
    assert update.sensitivity == 0.5 and update.noise_multiplier == pytest.approx(
        update_noise_multiplier(1.1, 2.0)
    )
    assert effective_gaussian_multiplier(event.event) == pytest.approx(1.1)
    rdp = get_accountant("rdp")
    assert rdp.epsilon(Composed((event,), 1000), 1e-5) == pytest.approx(
        rdp.epsilon(sampled_gaussian(0.01, 1.1, 1000), 1e-5), rel=1e-9
    )


def test_clip_norm_tracks_the_median() -> None:
    n, d = 400, 5
    mech = AdaptiveClipping(
        noise_multiplier=1.0, initial_clip_norm=0.1, count_noise_stddev=5.0, learning_rate=0.2
    )
    state: dict = {}
    g = torch.Generator().manual_seed(0)
    for t in range(80):
        direction = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
        norms = torch.rand(n, 1, generator=g) * 2.0  # median norm 1.0
        ctx = transform_context(n, d, scheme="all", population=n, round_index=t, state=state)
        state = dict(mech(direction * norms, ctx).state)
    assert state["clip_norm"] == pytest.approx(1.0, abs=0.1)


def test_applied_update_noise_matches_the_event() -> None:
    n, d, clip = 10, 20_000, 0.3
    mech = AdaptiveClipping(noise_multiplier=0.8, initial_clip_norm=clip, count_noise_stddev=1.0)
    ctx = transform_context(n, d, rate=0.1, population=100)  # qW = 10
    rows = torch.randn(n, d, dtype=torch.float64)
    out = mech(rows, ctx)
    clipped_sum = (rows * (clip / rows.norm(dim=1, keepdim=True)).clamp(max=1)).sum(0)
    noise = (out.values.mean(0) * 10 - clipped_sum).numpy()
    claimed = out.events[0].event.events[1].noise_stddev
    assert claimed == pytest.approx(update_noise_multiplier(0.8, 1.0) * clip)
    assert scipy.stats.kstest(noise / claimed, "norm").pvalue > 1e-3
    assert math.isfinite(out.state["noisy_unclipped_fraction"])
