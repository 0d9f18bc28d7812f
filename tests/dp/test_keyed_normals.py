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
    """Recomputed in float64 from the SFC64 bits of (stream seed of the client, step)."""
    size, half = 2 * 37 + 1, 38
    z = keyed_normals(5, 2, "dp_sgd_noise", np.array([7, 3]), 3, size)
    for row, client in enumerate([7, 3]):
        entropy = [stream_seed(5, 2, client, "dp_sgd_noise"), 3]
        bits = np.random.SFC64(np.random.SeedSequence(entropy)).random_raw(2 * half)
        u = ((bits[:half] & np.uint64((1 << 53) - 1)).astype(np.float64) + 1) * 2.0**-53
        theta = (bits[half:] & np.uint64((1 << 24) - 1)).astype(np.float64) * 2 * np.pi / 2**24
        r = np.sqrt(-2 * np.log(u))
        expected = np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:size]
        np.testing.assert_allclose(z[row].double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_radius_uses_53_bit_uniforms() -> None:
    """The smallest uniform is 2⁻⁵³, not float32's 2⁻²⁴: the radius reaches √(106 ln 2) ≈ 8.57
    (a 24-bit uniform stops at 5.77σ, see the docstring); a uniform of 2⁻²³ gives √(46 ln 2)."""
    bits = np.array([0, (1 << 30) - 1 + (1 << 60), 0, 0], dtype=np.uint64)  # high bits ignored
    out = box_muller_53(bits, torch.empty(4))
    assert abs(out[0].item() - math.sqrt(106 * math.log(2))) < 1e-5
    assert abs(out[1].item() - math.sqrt(-2 * math.log(2.0**-23))) < 1e-5
    assert out[2].item() == 0.0 and out[3].item() == 0.0  # θ = 0: cos 1, sin 0
