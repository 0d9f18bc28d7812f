"""DP-SGD's cohort noise (:func:`fedguard.rng.keyed_normals`): keyed per client and step,
standard normal, the documented Box–Muller on SFC64 bits, and a tail that reaches 8.57σ."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
import torch

from fedguard.rng import box_muller_53, keyed_normals, stream_seed


def test_rows_are_keyed_per_client_and_step_and_cohort_independent() -> None:
    clients = np.array([5, 2, 9, 40])
    z = keyed_normals(3, 1, "dp_sgd_noise", clients, 4, 1001)  # odd size
    assert z.shape == (4, 1001) and z.dtype == torch.float32
    alone = keyed_normals(3, 1, "dp_sgd_noise", clients[2:3], 4, 1001)
    assert torch.equal(z[2], alone[0])  # bit for bit, whoever trains with it
    many = keyed_normals(3, 1, "dp_sgd_noise", np.arange(200), 4, 1001)  # several blocks
    assert torch.equal(many[9], alone[0]) and torch.equal(many[40], z[3])
    assert not torch.equal(z[2], keyed_normals(3, 1, "dp_sgd_noise", clients[2:3], 5, 1001)[0])
    assert not torch.equal(z[2], keyed_normals(3, 2, "dp_sgd_noise", clients[2:3], 4, 1001)[0])
    assert not torch.equal(z[2], keyed_normals(4, 1, "dp_sgd_noise", clients[2:3], 4, 1001)[0])
    corr = np.corrcoef(z.numpy())
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.15


def test_values_are_standard_normal() -> None:
    z = keyed_normals(0, 0, "dp_sgd_noise", np.arange(20), 0, 10_001).double().numpy().ravel()
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / math.sqrt(z.size) and abs(z.var() - 1) < 0.01


def test_rows_are_box_muller_of_the_documented_sfc64_stream() -> None:
    """Recomputed in float64 from the words of an SFC64 seeded as documented (through numpy's
    own state setter), in a block of several clients and alone."""
    from fedguard.rng import _splitmix64

    size, half = 2 * 37 + 1, 38
    z = keyed_normals(5, 2, "dp_sgd_noise", np.array([7, 3, 12]), 3, size)
    for row, client in enumerate([7, 3, 12]):
        key = np.uint64(stream_seed(5, 2, client, "dp_sgd_noise"))
        with np.errstate(over="ignore"):
            abc = _splitmix64(key ^ _splitmix64(np.arange(3, dtype=np.uint64) + np.uint64(9)))
        generator = np.random.SFC64(0)
        state = generator.state
        state["state"]["state"] = np.array([*abc, 1], dtype=np.uint64)
        generator.state = state
        generator.random_raw(12)
        bits = generator.random_raw((3 * half + 1) // 2)
        words = bits.view(np.uint32).astype(np.float64)
        lo, hi, angle = words[:half], words[half : 2 * half], words[2 * half : 3 * half]
        u = ((hi % 2**22) * 2**31 + (lo % 2**31) + 1) * 2.0**-53
        theta = (angle % 2**24) * 2 * np.pi / 2**24
        r = np.sqrt(-2 * np.log(u))
        expected = np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:size]
        np.testing.assert_allclose(z[row].double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_radius_uses_53_bit_uniforms() -> None:
    """The smallest uniform is 2⁻⁵³, not float32's 2⁻²⁴: the radius reaches √(106 ln 2) ≈ 8.57
    (a 24-bit uniform stops at 5.77σ, see the docstring); the bits above 31 (lo), 22 (hi) and
    24 (angle) are ignored."""
    # words: lo of pairs 0, 1; hi of pairs 0, 1; angle of pairs 0, 1
    words = np.array([0, 2**32 - 1, 0, 2, 0, 2**24 + 2**23], dtype=np.uint32)
    out = box_muller_53(words, torch.empty(4))
    assert abs(out[0].item() - math.sqrt(106 * math.log(2))) < 1e-5  # u = 2⁻⁵³, θ = 0
    u = 2 * 2.0**-22 + 2.0**31 * 2.0**-53  # hi = 2, lo = 2³¹ − 1 → + 1
    assert abs(out[1].item() + math.sqrt(-2 * math.log(u))) < 1e-5  # θ = π: cos = −1
    assert out[2].item() == 0.0 and abs(out[3].item()) < 1e-5  # sin 0, sin π
