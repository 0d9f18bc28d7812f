"""Random rotation (Kairouz, Liu & Steinke 2021, Sec. 4) in the distributed-noise transports."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedguard.components import build_components
from fedguard.defenses.dp.kernels import clip_rows
from fedguard.defenses.dp.secagg_discrete_gaussian import SecAggDiscreteGaussian
from fedguard.defenses.dp.secagg_noise import (
    conditional_rounding_bound,
    fast_walsh_hadamard,
    padded_dimension,
    rotate,
    rotation_clip_probability,
    rotation_signs,
    unrotate,
)
from fedguard.defenses.dp.secagg_skellam import SecAggSkellam
from fedguard.defenses.secure_aggregation.fixed_point import choose_encoding
from fedguard.errors import ConfigError
from fedguard.types import RoundContext
from tests.dp.helpers import small_spec


def _signs(dimension: int, seed: int = 0) -> torch.Tensor:
    return rotation_signs(torch.Generator().manual_seed(seed), dimension)


def _round(n: int, d: int, seed: int = 0, round_index: int = 0) -> RoundContext:
    return RoundContext(round_index, seed, torch.zeros(d), tuple(range(n)), n)


def test_padded_dimension_is_the_next_power_of_two() -> None:
    got = [padded_dimension(d) for d in (1, 2, 3, 4, 5, 1000, 1024, 1025)]
    assert got == [1, 2, 4, 4, 8, 1024, 1024, 2048]


@pytest.mark.parametrize("d", [1, 2, 4, 8, 32, 256])
def test_fast_walsh_hadamard_matches_scipy_hadamard(d: int) -> None:
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    h = torch.from_numpy(scipy.linalg.hadamard(d).astype("float64"))  # (d, d) Sylvester
    assert torch.allclose(fast_walsh_hadamard(x), x @ h.T, rtol=0, atol=1e-12 * d)
    with pytest.raises(ValueError, match="power-of-two"):
        fast_walsh_hadamard(torch.zeros(2, 6))


@pytest.mark.parametrize("d", [1, 3, 5, 12, 100])
def test_rotation_is_the_explicit_matrix_h_d_over_sqrt_d(d: int) -> None:
    dp = padded_dimension(d)
    signs = _signs(dp, seed=d)
    x = torch.randn(4, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = torch.from_numpy(scipy.linalg.hadamard(dp).astype("float64"))
    matrix = (h * signs[None, :])[:, :d] / math.sqrt(dp)  # (d', d): columns of H·D for [x; 0]
    assert torch.allclose(rotate(x, signs), x @ matrix.T, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 3000), n=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_rotation_is_orthogonal_and_its_inverse_recovers_the_input(
    d: int, n: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 10 ** float(
        torch.rand(1, generator=g) * 6 - 3
    )
    signs = rotation_signs(g, padded_dimension(d))
    y = rotate(x, signs)  # (n, d')
    assert y.shape == (n, padded_dimension(d))
    assert torch.allclose(y.norm(dim=1), x.norm(dim=1), rtol=1e-12, atol=0)
    back = unrotate(y, signs, d)
    assert back.shape == (n, d)
    assert float((back - x).abs().max()) <= 1e-12 * float(x.abs().max())
    # the padded tail of the inverse is exactly what was padded: zeros (up to float error)
    full = unrotate(y, signs, padded_dimension(d))
    assert float(full[:, d:].norm()) <= 1e-12 * float(x.norm())


@pytest.mark.parametrize("d", [1000, 4096, 3])
def test_rotation_flattens_a_one_hot_vector(d: int) -> None:
    dp = padded_dimension(d)
    spike = torch.zeros(1, d, dtype=torch.float64)
    spike[0, d // 3] = 5.0
    y = rotate(spike, _signs(dp))
    # every coordinate of H·D·e_j/√d' is ±1/√d': the spike is spread perfectly evenly
    assert torch.allclose(y.abs(), torch.full_like(y, 5.0 / math.sqrt(dp)), rtol=1e-12, atol=0)


def test_rotated_coordinates_exceed_the_hoeffding_range_rarely() -> None:
    d, c, p = 1000, 1.0, 0.05
    dp = padded_dimension(d)
    t = c * math.sqrt(2 * math.log(2 * dp / p) / dp)  # where rotation_clip_probability = p
    assert rotation_clip_probability(c, t, dp) == pytest.approx(p)
    assert rotation_clip_probability(c, c, dp) == 0.0
    g = torch.Generator().manual_seed(7)
    x = torch.zeros(1, d, dtype=torch.float64)
    x[0, :4] = torch.tensor([0.7, -0.5, 0.4, 0.3], dtype=torch.float64)  # spiky, norm < 1
    trials = 400
    exceed = sum(
        int(float(rotate(x, rotation_signs(g, dp)).abs().max()) > t) for _ in range(trials)
    )
    assert exceed / trials <= p  # a bound: the empirical rate must be below it
    assert float(x.abs().max()) > t  # without rotation this vector would be clipped


def test_one_seed_one_rotation_for_every_client_of_the_round() -> None:
    dp = 512
    a = rotation_signs(_round(3, 300, seed=5).generator("secagg_rotation"), dp)
    b = rotation_signs(
        RoundContext(0, 5, torch.zeros(300), (9, 4), 50).generator("secagg_rotation"), dp
    )
    assert torch.equal(a, b)  # the stream depends on (seed, round) only, not on who takes part
    other_round = rotation_signs(
        _round(3, 300, seed=5, round_index=1).generator("secagg_rotation"), dp
    )
    assert not torch.equal(a, other_round)
    assert set(a.tolist()) == {-1.0, 1.0}
    # rotating the clients' rows together is rotating each client with the shared signs
    x = torch.randn(3, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = torch.cat([rotate(x[i : i + 1], a) for i in range(3)])
    assert torch.equal(rotate(x, a), rows)
    # and the round is reproducible bit for bit
    t = SecAggSkellam(noise_multiplier=1.0, clip_norm=1.0, scale=2.0**8, expected_clients=3.0)
    first = t(x.float(), torch.ones(3), _round(3, 300, seed=5))
    second = t(x.float(), torch.ones(3), _round(3, 300, seed=5))
    assert torch.equal(first.update_sum, second.update_sum)


@pytest.mark.parametrize("cls", [SecAggSkellam, SecAggDiscreteGaussian])
def test_decoded_sum_is_the_clipped_weighted_sum_within_the_documented_error(cls: type) -> None:
    n, d, c, scale = 5, 300, 1.0, 2.0**10
    g = torch.Generator().manual_seed(3)
    x, _ = clip_rows(torch.randn(n, d, generator=g, dtype=torch.float64) * 0.2, c)
    x[0] = 0.0
    x[0, 7] = c  # one maximally spiky client
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    expected = (w[:, None] * x).sum(0)  # (d,)
    # noise far below one lattice unit: every draw is 0, so only rounding error remains
    kw = {"noise_multiplier": 1e-9, "clip_norm": c, "scale": scale, "expected_clients": 5.0}
    flat = cls(**kw, rotation=False, clip_range=c)(x, w, _round(n, d))
    rotated = cls(**kw, rotation=True, clip_range=c)(x, w, _round(n, d))
    narrow = cls(**kw, rotation=True, clip_range=0.35 * c)(x, w, _round(n, d))
    for out in (flat, rotated, narrow):
        assert out.update_sum.shape == (d,) and out.update_sum.dtype == torch.float64
        error = out.update_sum - expected
        bound = out.info["max_decoding_error"]  # per coordinate; with rotation also in L2
        assert float(error.abs().max()) <= bound + 1e-9
        if out.info["rotation"]:
            assert float(error.norm()) <= bound + 1e-9
        assert out.weight_sum == pytest.approx(float(w.sum()))
    assert out.info["max_decoding_error_rotated"] == pytest.approx(float(w.max()) * n / scale)
    assert out.info["max_decoding_error"] == pytest.approx(
        out.info["max_decoding_error_rotated"] * math.sqrt(512)
    )
    assert flat.info["rotation"] is False and rotated.info["rotation"] is True
    assert rotated.info["encoded_dimension"] == 512 and flat.info["encoded_dimension"] == d
    assert rotated.events[0].dimension == 512
    assert rotated.events[0].l2_sensitivity == pytest.approx(c * scale + math.sqrt(512))
    # the flat rotated vectors fit a narrower range: no coordinate clipped, fewer bits
    assert narrow.info["clipped_coordinates"] == 0
    assert narrow.info["rotation_clip_probability"] < 1e-5
    assert narrow.info["bits"] < flat.info["bits"]


@pytest.mark.parametrize("cls", [SecAggSkellam, SecAggDiscreteGaussian])
def test_bit_width_and_wrap_bound_count_the_padded_coordinates(cls: type) -> None:
    n, d, scale = 4, 300, 2.0**8
    t = cls(noise_multiplier=1.0, clip_norm=1.0, scale=scale, expected_clients=4.0)
    x, _ = clip_rows(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), 1.0)
    out = t(x, torch.ones(n), _round(n, d))
    tail = t.client_noise.tail_bound
    padded = choose_encoding(torch.ones(n), 512, t.clip_range, scale, None, tail)
    unpadded = choose_encoding(torch.ones(n), d, t.clip_range, scale, None, tail)
    assert (out.info["bits"], out.info["wrap_probability"]) == (
        padded.bits,
        padded.wrap_probability,
    )
    assert 0 < padded.wrap_probability < 1e-9
    assert (padded.bits, padded.wrap_probability) != (unpadded.bits, unpadded.wrap_probability)


def test_conditional_rounding_after_rotation_uses_the_padded_dimension() -> None:
    n, d, c, scale, beta = 4, 1000, 1.0, 2.0**6, 1e-3
    g = torch.Generator().manual_seed(11)
    x, _ = clip_rows(torch.randn(n, d, generator=g, dtype=torch.float64), c)
    t = SecAggSkellam(
        noise_multiplier=1e-9,
        clip_norm=c,
        scale=scale,
        expected_clients=4.0,
        conditional_rounding_beta=beta,
        clip_range=0.5,  # below clip_norm: allowed with rotation
    )
    out = t(x, torch.ones(n), _round(n, d))
    assert out.events[0].l2_sensitivity == pytest.approx(
        conditional_rounding_bound(c, scale, 1024, beta)
    )
    assert t.lattice_sensitivity(t.encoded_dimension(d)) == out.events[0].l2_sensitivity
    error = out.update_sum - x.sum(0)
    assert float(error.norm()) <= out.info["max_decoding_error"] + 1e-9


def test_rotation_flag_validation_and_config() -> None:
    kw = {"noise_multiplier": 1.0, "clip_norm": 1.0, "expected_clients": 4.0}
    with pytest.raises(ConfigError, match="rotation"):
        SecAggSkellam(**kw, rotation="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="without rotation"):
        SecAggDiscreteGaussian(**kw, rotation=False, clip_range=0.5)
    assert SecAggDiscreteGaussian(**kw, clip_range=0.5).rotation is True
    base = {
        "clients.n_clients": 4,
        "defense.client_transforms": [{"name": "clip", "clip_norm": 1.0}],
    }
    for rotation, encoded in ((False, 10), (True, 16)):
        spec = small_spec(
            **base,
            **{
                "defense.transport": {"name": "secagg_skellam", "scale": 64.0, "rotation": rotation}
            },
        )
        transport = build_components(spec).transport
        assert transport.rotation is rotation
        out = transport(torch.zeros(4, 10), torch.ones(4), _round(4, 10))
        assert out.events[0].dimension == encoded
