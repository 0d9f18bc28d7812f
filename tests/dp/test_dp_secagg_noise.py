"""Discrete Gaussian / Skellam noise inside secure aggregation: events follow the survivors."""

from __future__ import annotations

import math

import pytest
import torch

from fedguard.components import build_components
from fedguard.defenses.dp.secagg_discrete_gaussian import SecAggDiscreteGaussian
from fedguard.defenses.dp.secagg_noise import lattice_l2_sensitivity
from fedguard.defenses.dp.secagg_skellam import SecAggSkellam
from fedguard.defenses.secure_aggregation.errors import ProtocolAbort
from fedguard.errors import IncompatibleError
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.events import DiscreteGaussian, Skellam
from fedguard.types import RoundContext
from tests.dp.helpers import small_spec


def _round(n: int, d: int, seed: int = 0) -> RoundContext:
    return RoundContext(0, seed, torch.zeros(d), tuple(range(n)), n)


@pytest.mark.parametrize("rotation", [True, False])
@pytest.mark.parametrize("cls", [SecAggSkellam, SecAggDiscreteGaussian])
def test_noise_in_the_sum_matches_the_event(cls: type, rotation: bool) -> None:
    n, d, scale, z, c = 6, 3000, 2.0**8, 0.5, 1.0
    transport = cls(
        noise_multiplier=z, clip_norm=c, scale=scale, expected_clients=6.0, rotation=rotation
    )
    out = transport(torch.zeros(n, d), torch.ones(n), _round(n, d))
    (event,) = out.events
    assert out.info["survivors"] == n
    noise = out.update_sum.double() * scale  # lattice units
    if isinstance(event, Skellam):
        variance = event.variance
    else:
        assert isinstance(event, DiscreteGaussian) and event.n_clients == n
        variance = n * event.local_noise_stddev**2
    # total variance is (z·C·scale)² when the expected cohort sends
    assert variance == pytest.approx((z * c * scale) ** 2, rel=1e-9)
    ratio = float(noise.var()) / variance
    assert abs(ratio - 1.0) < 6 * math.sqrt(2 / d)
    encoded = 4096 if rotation else d  # the rotation pads to the next power of two
    assert out.update_sum.shape == (d,)
    assert event.dimension == encoded == out.info["encoded_dimension"]
    assert event.l2_sensitivity == pytest.approx(c * scale + math.sqrt(encoded))


@pytest.mark.parametrize("cls", [SecAggSkellam, SecAggDiscreteGaussian])
def test_dropouts_mean_less_recorded_noise_and_larger_epsilon(cls: type) -> None:
    n, d = 10, 50
    kw = {"noise_multiplier": 1.0, "clip_norm": 1.0, "scale": 2.0**6, "expected_clients": 10.0}
    full = cls(**kw)(torch.zeros(n, d), torch.ones(n), _round(n, d))
    lossy = cls(**kw, dropout_rate=0.2, threshold_fraction=0.3, allow_unsafe_threshold=True)
    for seed in range(50):  # some dropouts happen after the input was sent: find a lossy round
        try:
            dropped = lossy(torch.zeros(n, d), torch.ones(n), _round(n, d, seed=seed))
        except ProtocolAbort:
            continue
        survivors = dropped.info["survivors"]
        if survivors < n:
            break
    assert survivors < n
    (e_full,), (e_drop,) = full.events, dropped.events
    if isinstance(e_full, Skellam):
        assert e_drop.variance == pytest.approx(e_full.variance * survivors / n)
    else:
        assert (e_full.n_clients, e_drop.n_clients) == (n, survivors)
    rdp = get_accountant("rdp")
    assert rdp.epsilon(e_drop, 1e-5) > rdp.epsilon(e_full, 1e-5)


def test_run_binding_counts_only_honest_survivors_and_refuses_robust_rules() -> None:
    base = {
        "clients.n_clients": 6,
        "attack.n_malicious": 1,
        "attack.model_attack": "sign_flip",
        "defense.n_byzantine": 1,
        "defense.client_transforms": [{"name": "clip", "clip_norm": 1.0}],
        "defense.transport": {"name": "secagg_skellam", "clip_norm": 1.0, "scale": 64.0},
    }
    comps = build_components(small_spec(**base))
    out = comps.transport(torch.zeros(6, 8), torch.ones(6), _round(6, 8))
    assert out.info["noise_honest_clients"] == 5
    assert out.events[0].variance == pytest.approx(5 * (64.0**2) / 6)
    with pytest.raises(IncompatibleError, match="clip"):
        build_components(small_spec(**{**base, "defense.client_transforms": []}))
    assert lattice_l2_sensitivity(1.0, 64.0, 100, "replace_one") == pytest.approx(2 * 74.0)


def test_conditional_rounding_bounds_the_norm_and_tightens_sensitivity() -> None:
    from fedguard.defenses.dp.secagg_noise import conditional_round, conditional_rounding_bound

    n, d, scale, c, beta = 4, 4096, 2.0**4, 1.0, 1e-3
    bound = conditional_rounding_bound(c, scale, d, beta)
    assert bound < c * scale + math.sqrt(d)  # tighter than the deterministic bound
    assert bound**2 == pytest.approx(
        min(
            (c * scale) ** 2 + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c * scale + 32),
            (c * scale + 64) ** 2,
        )
    )
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    rounded = conditional_round(x * c * scale, bound, gens)
    assert bool((rounded == rounded.round()).all())
    assert bool((rounded.norm(dim=1) <= bound).all())
    assert bool(((rounded - x * c * scale).abs() < 1).all())

    kw = {"noise_multiplier": 1.0, "clip_norm": c, "scale": scale, "expected_clients": 4.0}
    plain = SecAggSkellam(**kw, clip_range=2.0)
    conditional = SecAggSkellam(**kw, clip_range=2.0, conditional_rounding_beta=beta)
    out = conditional(x.float(), torch.ones(n), _round(n, d))
    assert out.events[0].l2_sensitivity == pytest.approx(bound)
    assert out.events[0].l2_sensitivity < plain.lattice_sensitivity(d)
    rdp = get_accountant("rdp")
    assert rdp.epsilon(out.events[0], 1e-5) < rdp.epsilon(
        Skellam(out.events[0].variance, plain.lattice_sensitivity(d), d), 1e-5
    )
    with pytest.raises(Exception, match="power of two"):
        SecAggSkellam(**{**kw, "scale": 100.0}, clip_range=2.0, conditional_rounding_beta=beta)
