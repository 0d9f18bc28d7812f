"""Fixed-point encoding of float updates into Z_R, R = 2^bits, and centred decoding.

Encoding of client i with public weight w_i (normalized by the largest weight of the round,
``w̃_i = w_i / max_j w_j ∈ (0, 1]``, so the range does not depend on the weights' units):

1. clip every coordinate to ``[-clip_range, clip_range]``;
2. multiply by ``w̃_i · scale``;
3. stochastic rounding: ``floor(v) + Bernoulli(v - floor(v))`` with the client's generator
   (unbiased; error strictly below one unit);
4. optional integer noise (distributed DP), then reduce mod R.

So ``|enc_i| ≤ ceil(scale · w̃_i · clip_range)`` coordinate-wise and the sum of m clients is
bounded by ``B = Σ_i ceil(scale · w̃_i · clip_range)``. Decoding reads a residue ``v`` as ``v`` if
``v < R/2`` and ``v − R`` otherwise (centred), which is exact whenever the true integer sum lies in
``[−R/2, R/2)``; without noise we require ``B < R/2`` (an error otherwise — never a silent wrap).
The decoded float sum ``max_j w_j · Σ enc / scale`` is within ``max_j w_j · m / scale`` of
``Σ_i w_i · clip(Δ_i)`` in every coordinate (one rounding unit per client).

With unbounded integer noise (Skellam, discrete Gaussian) the sum can exceed any bound; the
bit width is then chosen so that the union bound ``d · P(|noise of n clients| ≥ R/2 − B)`` is below
``max_wrap_probability`` (1e-9 by default), and that bound is reported.

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017 (inputs in Z_R, R with headroom for n clients).
.. [2] P. Kairouz, Z. Liu, T. Steinke, "The Distributed Discrete Gaussian Mechanism for Federated
   Learning with Secure Aggregation", ICML 2021 (modular clipping, bit width vs. wrap-around).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import EncodingOverflow

MAX_BITS = 64


@dataclass(frozen=True)
class Encoding:
    """A chosen fixed-point format: R = 2^bits, and the guarantees that come with it."""

    bits: int
    scale: float
    clip_range: float
    weight_unit: float  # max_j w_j: encoded inputs are (w_i / weight_unit) * clip(Δ_i)
    sum_bound: int  # B: |Σ enc_i| ≤ B coordinate-wise without noise
    wrap_probability: float  # 0.0 without noise, else the union bound over coordinates

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    @property
    def word_dtype(self) -> np.dtype:
        """Smallest machine word holding Z_R (arithmetic there is mod 2^32 / 2^64, R divides it)."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)


def client_limit(weight: float, weight_unit: float, scale: float, clip_range: float) -> int:
    """``L_i = ceil(scale · w̃_i · clip_range)`` as an exact integer: |enc_i| never exceeds it.

    The product is the float64 value :func:`encode` clamps to, so the bound and the encoder agree
    to the last bit; the per-client limits are then summed as Python integers. (Summing them in
    float64, as before, could round the bound *down* near 2^54 and let a sum of exactly R/2 wrap:
    +8.447 decoded as −8.447.)
    """
    return math.ceil(scale * (weight / weight_unit) * clip_range)


def sum_bound(weights: Tensor, clip_range: float, scale: float) -> tuple[int, float]:
    """``(B, weight_unit)``: the exact bound on |Σ enc_i| and the normalizing weight ``max w``."""
    w = [float(v) for v in weights.detach().to(torch.float64).reshape(-1).tolist()]
    unit = max(w) if w else 1.0
    if unit <= 0.0:
        unit = 1.0
    return sum(client_limit(v, unit, scale, clip_range) for v in w), unit


def choose_encoding(
    weights: Tensor,
    dim: int,
    clip_range: float,
    scale: float,
    bits: int | None,
    noise_tail: Callable[[float, int], float] | None = None,
    max_wrap_probability: float = 1e-9,
) -> Encoding:
    """Pick (or check) the bit width for ``weights`` (n,) and dimension ``dim``.

    ``noise_tail(a, n)`` bounds P(|sum of n clients' noise| ≥ a) for one coordinate. With
    ``bits=None`` the smallest width meeting the guarantees is returned; a given ``bits`` that
    does not meet them raises :class:`EncodingOverflow`.
    """
    bound, unit = sum_bound(weights, clip_range, scale)
    n = int(weights.numel())

    def wrap(b: int) -> float:
        half = 1 << (b - 1)
        if bound >= half:
            return 1.0
        if noise_tail is None:
            return 0.0
        return min(1.0, dim * noise_tail(float(half - bound), n))

    if bits is None:
        for b in range(2, MAX_BITS + 1):
            p = wrap(b)
            if (noise_tail is None and p == 0.0) or (
                noise_tail is not None and p < max_wrap_probability
            ):
                return Encoding(b, scale, clip_range, unit, bound, p)
        raise EncodingOverflow(
            f"no bit width up to {MAX_BITS} holds the sum of {n} clients (bound {bound}) with "
            f"wrap probability below {max_wrap_probability}; lower scale or clip_range."
        )
    p = wrap(bits)
    if p == 1.0 or (noise_tail is not None and p >= max_wrap_probability):
        raise EncodingOverflow(
            f"bits={bits} cannot hold the sum of {n} clients: the bound is {bound} (plus noise) "
            f"but R/2 = {1 << (bits - 1)}; the wrap probability would be {p:.3g}."
        )
    return Encoding(bits, scale, clip_range, unit, bound, p)


def encode(
    update: Tensor, weight: float, encoding: Encoding, generator: torch.Generator
) -> tuple[Tensor, int]:
    """One client's ``(d,)`` float update → ``(d,)`` int64, ``|value| ≤ ceil(scale·w̃·c)``.

    Returns the integers and the number of coordinates that clipping changed.
    """
    x = update.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise EncodingOverflow("a client update contains NaN or infinite values.")
    c = encoding.clip_range
    clipped = x.clamp(-c, c)
    n_clipped = int((clipped != x).sum().item())
    v = clipped * (weight / encoding.weight_unit) * encoding.scale
    # Clamp to the exact per-client limit that the bit width was chosen for: the product above
    # associates differently from the limit's and may exceed it by one ulp at large scales.
    limit = client_limit(weight, encoding.weight_unit, encoding.scale, c)
    bound = float(limit)
    if int(bound) > limit:  # float(limit) rounded up: take the float just below
        bound = math.nextafter(bound, 0.0)
    v = v.clamp(-bound, bound)  # an integer-valued float: rounding cannot push it past `limit`
    low = torch.floor(v)
    up = torch.rand(v.shape, generator=generator, dtype=torch.float64) < (v - low)
    return (low + up.to(torch.float64)).to(torch.int64), n_clipped


def to_ring(values: Tensor, encoding: Encoding) -> np.ndarray:
    """int64 integers → residues in Z_R as the encoding's word dtype."""
    arr = values.detach().cpu().numpy().astype(np.int64, copy=False)
    mask = np.uint64(encoding.modulus - 1) if encoding.bits < 64 else np.uint64(2**64 - 1)
    return (arr.view(np.uint64) & mask).astype(encoding.word_dtype)


def reduce(words: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Reduce words (wrapping mod 2^32 or 2^64) to Z_R."""
    if encoding.bits in (32, 64):
        return words
    return words & words.dtype.type(encoding.modulus - 1)


def decode(residues: np.ndarray, encoding: Encoding) -> Tensor:
    """Centred decoding of the summed residues (d,) → float64 sum of ``w_i · clip(Δ_i)``."""
    r = reduce(residues.astype(np.uint64), encoding)  # (d,) in [0, R)
    if encoding.bits == 64:
        signed = r.view(np.int64)  # two's complement already is the centred residue
    else:
        half = np.uint64(1 << (encoding.bits - 1))
        modulus = np.uint64(encoding.modulus)
        signed = np.where(r >= half, -((modulus - r).astype(np.int64)), r.astype(np.int64))
    out = torch.from_numpy(signed.astype(np.float64))
    return out * (encoding.weight_unit / encoding.scale)


def error_bound(encoding: Encoding, n_summed: int) -> float:
    """Promised max |decoded − Σ w_i clip(Δ_i)| per coordinate without noise (float64 aside)."""
    return encoding.weight_unit * n_summed / encoding.scale
