"""Fixed-point encoding: error bound, unbiased rounding, overflow errors, bit width, wrap bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedguard.defenses.secure_aggregation.errors import EncodingOverflow
from fedguard.defenses.secure_aggregation.fixed_point import (
    Encoding,
    choose_encoding,
    decode,
    encode,
    error_bound,
    to_ring,
)
from fedguard.defenses.secure_aggregation.noise import SkellamNoise


def _ring_sum(ints: list[torch.Tensor], enc: Encoding) -> np.ndarray:
    total = np.zeros(ints[0].numel(), dtype=enc.word_dtype)
    for v in ints:
        total += to_ring(v, enc)
    return total


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 30),
    clip=st.floats(0.01, 10.0),
    log_scale=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_round_trip_error_within_promised_bound(
    n: int, d: int, clip: float, log_scale: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * clip  # some coordinates get clipped
    w = torch.rand(n, generator=g, dtype=torch.float64) * 50 + 0.5
    enc = choose_encoding(w, d, clip, 2.0**log_scale, None)
    assert enc.wrap_probability == 0.0 and enc.sum_bound < 2 ** (enc.bits - 1)
    ints = [encode(x[i], float(w[i]), enc, g)[0] for i in range(n)]
    for i in range(n):
        limit = math.ceil(2.0**log_scale * float(w[i]) / enc.weight_unit * clip)
        assert int(ints[i].abs().max()) <= limit
    decoded = decode(_ring_sum(ints, enc), enc)
    exact = (w[:, None] * x.clamp(-clip, clip)).sum(0)
    slack = 1e-9 * float(exact.abs().max() + 1)  # float64 arithmetic
    assert float((decoded - exact).abs().max()) <= error_bound(enc, n) + slack


def test_bits_are_minimal_and_a_too_small_width_is_an_error() -> None:
    w = torch.ones(10, dtype=torch.float64)
    enc = choose_encoding(w, 5, 1.0, 1000.0, None)  # bound 10 · 1000 = 10000: 15 bits
    assert enc.sum_bound == 10_000
    assert enc.sum_bound < 2 ** (enc.bits - 1) and enc.sum_bound >= 2 ** (enc.bits - 2)
    with pytest.raises(EncodingOverflow, match="bits=14"):
        choose_encoding(w, 5, 1.0, 1000.0, 14)
    assert choose_encoding(w, 5, 1.0, 1000.0, 15).bits == 15
    with pytest.raises(EncodingOverflow, match="no bit width"):
        choose_encoding(w, 5, 1.0, 2.0**62, None)


@pytest.mark.parametrize("bits", [8, 32, 33, 63, 64])
def test_centred_decoding_at_the_edges(bits: int) -> None:
    half = 2 ** (bits - 1)
    enc = Encoding(bits, 1.0, 1.0, 1.0, half - 1, 0.0)
    values = torch.tensor([-(half - 1), -1, 0, 1, half - 1], dtype=torch.int64)
    if bits == 64:
        values = torch.tensor([-(2**63), -1, 0, 1, 2**63 - 1], dtype=torch.int64)
    ring = to_ring(values, enc)
    assert ring.dtype == (np.uint32 if bits <= 32 else np.uint64)
    assert int(ring.max()) < 2**bits
    assert torch.equal(decode(ring, enc), values.to(torch.float64))


def test_stochastic_rounding_is_unbiased() -> None:
    enc = Encoding(16, 4.0, 1.0, 1.0, 4, 0.0)
    x = torch.full((200_000,), 0.075, dtype=torch.float64)  # 0.075 · scale 4 = 0.3 units
    ints, _ = encode(x, 1.0, enc, torch.Generator().manual_seed(3))
    ups = int((ints == 1).sum())
    assert set(ints.unique().tolist()) <= {0, 1}
    assert stats.binomtest(ups, ints.numel(), 0.3).pvalue > 1e-4


def test_non_finite_update_is_an_error() -> None:
    enc = Encoding(16, 4.0, 1.0, 1.0, 4, 0.0)
    with pytest.raises(EncodingOverflow, match="NaN"):
        encode(torch.tensor([0.0, float("nan")]), 1.0, enc, torch.Generator())


def test_noise_widens_bits_until_wrap_probability_below_target() -> None:
    noise = SkellamNoise(mu=1e4)
    w = torch.ones(50, dtype=torch.float64)
    enc = choose_encoding(w, 10_000, 1.0, 2.0**10, None, noise.tail_bound, 1e-9)
    assert enc.wrap_probability < 1e-9
    half = 2 ** (enc.bits - 2)  # one bit fewer
    narrower = 10_000 * noise.tail_bound(half - enc.sum_bound, 50)
    assert enc.sum_bound >= half or narrower >= 1e-9
    with pytest.raises(EncodingOverflow, match="wrap probability"):
        choose_encoding(w, 10_000, 1.0, 2.0**10, enc.bits - 1, noise.tail_bound, 1e-9)


def test_the_sum_at_scale_near_2_pow_54_does_not_wrap_to_its_negation() -> None:
    """The sweep's failure: B summed in float64 rounded down, the encoder's product rounded up
    by one ulp, the sum hit exactly R/2 and +8.447 decoded as −8.447."""
    w = torch.tensor([1.0, 0.276, 0.112], dtype=torch.float64)
    clip, scale = 6.085734870317002, 2.0**57 / 8.447  # scale ≈ 0.94 · 2^54
    enc = choose_encoding(w, 1, clip, scale, None)
    ints = [
        encode(torch.tensor([clip], dtype=torch.float64), float(w[i]), enc, torch.Generator())[0]
        for i in range(3)
    ]
    total = decode(_ring_sum(ints, enc), enc)
    assert float(total[0]) == pytest.approx(8.447, rel=1e-12)
    assert sum(int(v[0]) for v in ints) <= enc.sum_bound < 2 ** (enc.bits - 1)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5),
    log_scale=st.floats(0.0, 62.0),
    clip=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31),
)
def test_encoded_values_never_exceed_the_bound_at_any_scale(
    n: int, log_scale: float, clip: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.01
    try:
        enc = choose_encoding(w, 2, clip, 2.0**log_scale, None)
    except EncodingOverflow:
        return  # no width holds it: refused, never wrapped
    x = torch.tensor([clip, -clip], dtype=torch.float64)  # the extremes every client may send
    ints = [encode(x, float(w[i]), enc, g)[0] for i in range(n)]
    top = sum(int(v[0]) for v in ints)
    assert top <= enc.sum_bound < 2 ** (enc.bits - 1)
    decoded = decode(_ring_sum(ints, enc), enc)
    exact = float(w.sum()) * clip
    slack = error_bound(enc, n) + 1e-9 * exact  # one rounding unit per client, float64 aside
    assert abs(float(decoded[0]) - exact) <= slack  # never wrapped to the other sign
    assert abs(float(decoded[1]) + exact) <= slack
