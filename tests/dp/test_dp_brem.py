"""DP-BREM: the momentum sensitivity (derived bound, tight and never exceeded) and its events."""

from __future__ import annotations

import pytest
import torch

from fedguard.components import build_components
from fedguard.defenses.dp.dp_brem import DPBREM, momentum_sensitivity
from fedguard.defenses.momentum import ClientMomentum
from fedguard.errors import IncompatibleError
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.events import compose, sampled_gaussian
from tests.dp.helpers import small_spec, transform_context


def _momentum_after(
    gradients: torch.Tensor, present: list[bool], beta: float, form: str
) -> torch.Tensor:
    """Run the real ClientMomentum transform for one client over rounds it takes part in."""
    mech = ClientMomentum(beta=beta, form=form)
    state: dict = {}
    m = torch.zeros(gradients.shape[1])
    for t, g in enumerate(gradients):
        if not present[t]:
            continue
        out = mech(g[None], transform_context(1, gradients.shape[1], round_index=t, state=state))
        state, m = dict(out.state), out.values[0]
    return m


@pytest.mark.parametrize("form", ["exponential", "heavy_ball"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_bound_is_tight_for_aligned_updates(form: str, beta: float) -> None:
    c, k = 0.7, 6
    g = torch.zeros(k, 4, dtype=torch.float64)
    g[:, 0] = c  # the same vector of norm C every round
    m = _momentum_after(g, [True] * k, beta, form)
    assert float(m.norm()) == pytest.approx(momentum_sensitivity(c, beta, k, form), rel=1e-12)


@pytest.mark.parametrize("form", ["exponential", "heavy_ball"])
def test_bound_holds_for_random_clipped_updates_with_skipped_rounds(form: str) -> None:
    gen = torch.Generator().manual_seed(0)
    c, beta, rounds = 1.0, 0.8, 12
    for _ in range(50):
        g = torch.randn(rounds, 5, generator=gen, dtype=torch.float64)
        g = (
            g
            * (c / g.norm(dim=1, keepdim=True)).clamp(max=1.0)
            * torch.rand(rounds, 1, generator=gen)
        )
        present = (torch.rand(rounds, generator=gen) < 0.6).tolist()
        m = _momentum_after(g, present, beta, form)
        contributions = sum(present)
        assert float(m.norm()) <= momentum_sensitivity(c, beta, contributions, form) + 1e-12
        assert momentum_sensitivity(c, beta, contributions, form) <= momentum_sensitivity(
            c, beta, rounds, form
        )
    # closed forms: exponential never above C, heavy ball up to C/(1 − β)
    assert momentum_sensitivity(1.0, 0.9, 10_000, "exponential") == pytest.approx(1.0)
    assert momentum_sensitivity(1.0, 0.9, 10_000, "heavy_ball") == pytest.approx(10.0)


def test_events_and_noise_follow_the_round_sensitivity() -> None:
    mech = DPBREM(noise_multiplier=1.2, clip_norm=0.5, beta=0.9, form="heavy_ball")
    events = []
    for t in range(3):
        ctx = transform_context(5, 10_000, rate=0.05, population=100, round_index=t)
        out = mech(torch.zeros(10_000, dtype=torch.float64), ctx)
        s_t = 0.5 * (1 - 0.9 ** (t + 1)) / 0.1
        assert out.state["momentum_sensitivity"] == pytest.approx(s_t)
        (event,) = out.events
        assert event.event.sensitivity == pytest.approx(s_t)
        assert event.event.noise_multiplier == pytest.approx(1.2)
        noise = out.values * 5.0  # qW = 5
        assert float(noise.std()) == pytest.approx(1.2 * s_t, rel=0.05)
        events.append(event)
    rdp = get_accountant("rdp")
    assert rdp.epsilon(compose(events), 1e-5) == pytest.approx(
        rdp.epsilon(sampled_gaussian(0.05, 1.2, 3), 1e-5)
    )


def test_dp_brem_needs_clip_then_matching_momentum() -> None:
    good = {
        "defense.client_transforms": [
            {"name": "clip", "clip_norm": 1.0},
            {"name": "momentum", "beta": 0.9},
        ],
        "defense.server_transforms": [{"name": "dp_brem", "clip_norm": 1.0, "beta": 0.9}],
    }
    build_components(small_spec(**good))
    with pytest.raises(IncompatibleError, match="beta"):
        build_components(
            small_spec(**{**good, "defense.server_transforms": [{"name": "dp_brem", "beta": 0.5}]})
        )
    with pytest.raises(IncompatibleError, match="momentum"):
        build_components(
            small_spec(
                **{**good, "defense.client_transforms": [{"name": "clip", "clip_norm": 1.0}]}
            )
        )
    with pytest.raises(IncompatibleError, match="centered_clipping"):
        build_components(small_spec(**{**good, "defense.aggregator": "centered_clipping"}))
