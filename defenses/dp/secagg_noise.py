"""Shared part of the secure-aggregation transports with distributed discrete noise.

Each client L2-clips its update to ``clip_norm`` (a ``clip`` client transform), the transport
encodes it on the lattice (``scale`` units per 1.0, stochastic rounding) and adds integer noise
before masking, so the server only ever sees the noisy sum. The variance each client adds is its
share of (z·C·scale)² over the expected cohort qW. The event is computed from the transport's
report of who actually got into the sum (``survivors``) minus the ``n_byzantine`` tolerance
(clients that may be dishonest and add no noise): fewer survivors, less noise, larger ε.

Random rotation (``rotation: true``, the default; Kairouz, Liu & Steinke 2021, Sec. 4). Before
scaling and rounding, every client maps its update x ∈ R^d to (1/√d')·H·D·[x; 0] ∈ R^d', where
d' is the smallest power of two ≥ d (zero padding), H the d'×d' Sylvester–Hadamard matrix
(applied by the O(d' log d') fast Walsh–Hadamard transform, never as a matrix) and D a diagonal
of random signs drawn from the round's public stream ``secagg_rotation`` — the same for every
client of the round. The map is orthogonal, so ‖x‖₂ is preserved, and by Hoeffding each rotated
coordinate satisfies P(|y_i| ≥ t) ≤ 2 exp(−t²d' / (2‖x‖²)): the vector is flat,
‖y‖_∞ ≲ ‖x‖₂·√(2 ln(2d'/p) / d'). The server decodes the sum in the rotated basis and applies
the inverse D·Hᵀ/√d', then drops the padding. Everything that happens on the lattice happens in
dimension d': the bit width and the wrap-around union bound, the rounding term of the
sensitivity and the dimension of the privacy event all use d'. Because clipping a coordinate never
increases the L2 norm, ``clip_range`` may then be set below ``clip_norm`` (down to about
C·√(2 ln(2d'/p)/d'), which is where the rotation saves bits): the sensitivity is unaffected and
the probability p that a client's rotated update has a clipped coordinate is reported
(``info["rotation_clip_probability"]``). The rounding error of the decoded sum, per coordinate ε
in the rotated basis, becomes at most ε·√d' in L2 norm (hence also per coordinate) after the
inverse rotation (``info["max_decoding_error"]``; ``max_decoding_error_rotated`` is ε).

Lattice sensitivity. Stochastic rounding moves every coordinate by less than one unit, so a
clipped update ‖x‖₂ ≤ C becomes an integer vector of norm < C·scale + √d; that deterministic
bound is used by default (add/remove; twice that for replace-one). With
``conditional_rounding_beta`` β, each client re-draws its stochastic rounding until the norm is at
most √(min(c² + d/4 + √(2 ln(1/β))·(c + √d/2), (c + √d)²)), c = C·scale (Kairouz et al. 2021,
conditional randomized rounding; β is the per-draw failure probability, which only costs
retries and a tiny bias, never privacy), and that smaller bound is the sensitivity. Here d is
the encoded dimension: d' with rotation. With rotation off, the bit width still keeps a wrap
below ``max_wrap_probability``, but ``clip_range`` must cover ``clip_norm`` and so the width is
that of the worst-case (spiky) vector. The RDP bounds (Kairouz et al. Proposition 14; Agarwal et
al. Theorem 3.5) live in :mod:`fedguard.privacy.discrete`. The server knows the round's
participants under secure aggregation, so no amplification by sampling is claimed.

References
----------
Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation." ICML 2021 (random rotation, Sec. 4; conditional randomized rounding).
Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private Federated Learning."
NeurIPS 2021.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from fedguard.api import TransportOutput, require, require_positive
from fedguard.core.sampling import sampling_description
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import PrivacyEvent
from fedguard.types import RoundContext

from ..secure_aggregation.errors import ProtocolViolation
from .central_gaussian import check_clipped_by
from .kernels import check_sum_based_aggregation, clip_rows


def lattice_l2_sensitivity(clip_norm: float, scale: float, dimension: int, relation: str) -> float:
    """‖Δ‖₂ bound of one client's encoded integer vector: (C·scale + √d), ×2 for replace-one."""
    one = clip_norm * scale + math.sqrt(dimension)
    return one if relation == "add_remove" else 2.0 * one


def conditional_rounding_bound(
    clip_norm: float, scale: float, dimension: int, beta: float
) -> float:
    """√(min(c² + d/4 + √(2 ln(1/β))(c + √d/2), (c + √d)²)), c = C·scale (Kairouz et al. 2021)."""
    c, d = clip_norm * scale, float(dimension)
    squared = c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0)
    return math.sqrt(min(squared, (c + math.sqrt(d)) ** 2))


def conditional_round(
    scaled: Tensor, bound: float, generators: list[Any], max_tries: int = 1000
) -> Tensor:
    """Stochastic rounding of each row of ``scaled`` (n, d), re-drawn until ‖row‖₂ ≤ ``bound``.

    Row i uses ``generators[i]`` (its client's stream). Raises if a row fails ``max_tries`` times.
    """
    low = torch.floor(scaled)
    frac = scaled - low
    out = torch.empty_like(scaled)
    for i, gen in enumerate(generators):
        for _ in range(max_tries):
            up = torch.rand(frac.shape[1], generator=gen, dtype=frac.dtype, device=frac.device)
            row = low[i] + (up < frac[i]).to(frac.dtype)
            if float(torch.linalg.vector_norm(row)) <= bound:
                out[i] = row
                break
        else:
            raise IncompatibleError(
                f"conditional rounding failed {max_tries} times; raise conditional_rounding_beta."
            )
    return out


def local_lattice_stddev(
    noise_multiplier: float, clip_norm: float, scale: float, expected: float
) -> float:
    """Std of one client's integer noise: z·C·scale/√(qW) (shares of (zC)² on the sum)."""
    return noise_multiplier * clip_norm * scale / math.sqrt(expected)


def padded_dimension(dimension: int) -> int:
    """d' = the smallest power of two ≥ ``dimension`` (1 for d ≤ 1)."""
    return 1 << max(0, int(dimension) - 1).bit_length()


def fast_walsh_hadamard(x: Tensor) -> Tensor:
    """Unnormalized H·x along the last axis (length a power of two), H in Sylvester order.

    H_1 = [1], H_2k = [[H_k, H_k], [H_k, −H_k]] (the order of ``scipy.linalg.hadamard``);
    log2(d) butterfly stages of O(d) batched tensor operations, never a d×d matrix.
    """
    d = x.shape[-1]
    if d < 1 or d & (d - 1):
        raise ValueError(f"the Walsh–Hadamard transform needs a power-of-two length; got {d}.")
    y = x.reshape(-1, d).clone()  # (n, d)
    spare = torch.empty_like(y)  # ping-pong buffers: no allocation per stage
    h = 1
    while h < d:
        pairs = y.view(y.shape[0], d // (2 * h), 2, h)  # (n, blocks, 2, h)
        out = spare.view(pairs.shape)
        torch.add(pairs[:, :, 0], pairs[:, :, 1], out=out[:, :, 0])
        torch.sub(pairs[:, :, 0], pairs[:, :, 1], out=out[:, :, 1])
        y, spare = spare, y
        h *= 2
    return y.reshape(x.shape)


def rotation_signs(generator: torch.Generator, dimension: int) -> Tensor:
    """The diagonal D: ``dimension`` independent ±1 (float64), from the round's shared stream."""
    bits = torch.randint(0, 2, (dimension,), generator=generator, dtype=torch.int64)
    return (2 * bits - 1).to(torch.float64)  # (d',)


def rotate(rows: Tensor, signs: Tensor) -> Tensor:
    """(1/√d')·H·D·[x; 0] for each row of ``rows`` (n, d) → (n, d'), d' = ``signs.numel()``.

    Kairouz, Liu, Steinke (2021), Sec. 4: orthogonal, so every row keeps its L2 norm.
    """
    n, d = rows.shape
    dp = signs.numel()
    padded = torch.zeros(n, dp, dtype=torch.float64, device=rows.device)  # (n, d')
    padded[:, :d] = rows.to(torch.float64)
    return fast_walsh_hadamard(padded * signs) / math.sqrt(dp)


def unrotate(rotated: Tensor, signs: Tensor, dimension: int) -> Tensor:
    """Inverse of :func:`rotate`: D·Hᵀ·y/√d' (H is symmetric), padding dropped → (..., d)."""
    dp = signs.numel()
    back = fast_walsh_hadamard(rotated.to(torch.float64)) / math.sqrt(dp) * signs  # (..., d')
    return back[..., :dimension]


def rotation_clip_probability(clip_norm: float, clip_range: float, dimension: int) -> float:
    """P(some coordinate of a rotated vector with ‖x‖₂ ≤ C exceeds ``clip_range``).

    Hoeffding over the random signs, union over the d' coordinates:
    min(1, 2d'·exp(−clip_range²·d' / (2C²))). Zero when clip_range ≥ C (|y_i| ≤ ‖y‖₂ = ‖x‖₂).
    """
    if clip_range >= clip_norm:
        return 0.0
    exponent = -(clip_range**2) * dimension / (2.0 * clip_norm**2)
    return min(1.0, 2.0 * dimension * math.exp(exponent))


class DistributedNoiseMixin:
    """Binds the run's expected cohort, relation and tolerance; files the round's event.

    ``conditional_rounding_beta`` (optional): re-draw each client's stochastic rounding until its
    lattice norm is within the Kairouz et al. bound, which then replaces C·scale + √d as the
    sensitivity (needs a power-of-two ``scale``).

    ``rotation`` (default true): every client first applies the randomized Walsh–Hadamard
    rotation x ↦ H·D·[x; 0]/√d' (d' the next power of two ≥ d, D random signs shared by the
    round's clients) and the server inverts it on the decoded sum (Kairouz et al. 2021, Sec. 4).
    The lattice, the bit width, the wrap-around bound, the sensitivity's rounding term and the
    event's ``dimension`` then all use d'; ``clip_range`` may be below ``clip_norm`` (the
    probability of a clipped coordinate is reported). False encodes x as it is.
    """

    noise_multiplier: float
    clip_norm: float
    expected_clients: float | None
    conditional_rounding_beta: float | None
    rotation: bool
    clip_range: float
    scale: float

    def _validate_noise(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        require(isinstance(self.rotation, bool), "rotation", "true or false")
        require(
            self.rotation or self.clip_range >= self.clip_norm,
            "clip_range",
            f"at least clip_norm = {self.clip_norm} without rotation (the L2-clipped update must "
            "not be clipped again coordinate-wise)",
        )
        require(
            self.expected_clients is None or self.expected_clients > 0,
            "expected_clients",
            "None (from the run's sampling) or a number > 0",
        )
        beta = self.conditional_rounding_beta
        require(beta is None or 0 < beta < 1, "conditional_rounding_beta", "None or in (0, 1)")
        if beta is not None:
            require(
                math.log2(self.scale).is_integer(),
                "scale",
                "a power of two with conditional rounding (so the pre-rounded lattice values "
                "pass through the fixed-point encoding exactly)",
            )
            require(
                self.rotation or self.clip_range * self.scale >= self.clip_norm * self.scale + 1.0,
                "clip_range",
                "at least clip_norm + 1/scale with conditional rounding and no rotation",
            )
        if self.expected_clients is not None:
            self._bind(float(self.expected_clients), "add_remove", 0)

    def _bind(self, expected: float, relation: str, untrusted: int) -> None:
        object.__setattr__(self, "_expected", expected)
        object.__setattr__(self, "_relation", relation)
        object.__setattr__(self, "_untrusted", untrusted)
        object.__setattr__(self, "client_noise", self._make_noise(expected))

    def _make_noise(self, expected: float) -> Any:
        raise NotImplementedError  # abstract

    def _event(self, honest: int, dimension: int) -> PrivacyEvent:
        raise NotImplementedError  # abstract

    def encoded_dimension(self, dimension: int) -> int:
        """Length of the vectors on the lattice: d' (padded) with rotation, else d."""
        return padded_dimension(dimension) if self.rotation else dimension

    def lattice_sensitivity(self, dimension: int) -> float:
        """L2 sensitivity of the encoded sum under the bound relation (see the module doc).

        ``dimension`` is the encoded dimension (:meth:`encoded_dimension`: d' with rotation).
        """
        relation = getattr(self, "_relation", "add_remove")
        beta = self.conditional_rounding_beta
        if beta is None:
            return lattice_l2_sensitivity(self.clip_norm, self.scale, dimension, relation)
        one = conditional_rounding_bound(self.clip_norm, self.scale, dimension, beta)
        return one if relation == "add_remove" else 2.0 * one

    def check_compatible(self, spec: Any, components: Any) -> None:
        name = type(self).__name__
        check_sum_based_aggregation(name, spec, components)
        check_clipped_by(name, self.clip_norm, components)
        c = spec.clients
        sampling = sampling_description(
            c.sampling, c.n_clients, c.cohort_size or 0, c.sampling_rate or 0
        )
        expected = (
            float(self.expected_clients)
            if self.expected_clients is not None
            else float(sampling["expected_cohort"])
        )
        self._bind(expected, str(sampling["neighbouring_relation"]), int(spec.n_byzantine))

    def _with_event(
        self, out: TransportOutput, dimension: int, round_index: int
    ) -> TransportOutput:
        survivors = int(out.info["survivors"])
        honest = survivors - int(getattr(self, "_untrusted", 0))
        if honest <= 0:
            raise IncompatibleError(
                f"round {round_index + 1}: none of the {survivors} surviving clients is guaranteed "
                "honest, so no noise can be accounted."
            )
        info = {**out.info, "noise_honest_clients": honest}
        return replace(out, events=(*out.events, self._event(honest, dimension)), info=info)

    def _call(
        self, parent: Any, updates: Tensor, weights: Tensor, ctx: RoundContext
    ) -> TransportOutput:
        if getattr(self, "_expected", None) is None:
            raise IncompatibleError(
                f"{type(self).__name__} needs expected_clients, or a run to bind it to."
            )
        if updates.ndim != 2:
            return parent(updates, weights, ctx)  # the transport refuses it with its message
        d = updates.shape[1]
        model_d = ctx.global_params.numel()
        if model_d and d != model_d:
            raise ProtocolViolation(
                f"client updates have length {d}, but the model has {model_d} parameters."
            )
        work, inner_ctx, signs = updates, ctx, None
        if self.rotation:  # one sign diagonal per round, shared by every client
            signs = rotation_signs(ctx.generator("secagg_rotation"), padded_dimension(d))
            work = rotate(updates, signs)  # (n, d')
            inner_ctx = replace(ctx, global_params=torch.zeros(signs.numel()))
        dim = work.shape[1]
        if self.conditional_rounding_beta is not None:
            if weights.numel() and not bool((weights == weights.reshape(-1)[0]).all()):
                raise IncompatibleError(
                    "conditional rounding needs uniform weights (clients.weighting: uniform)."
                )
            bound = conditional_rounding_bound(
                self.clip_norm, self.scale, dim, self.conditional_rounding_beta
            )
            clipped, _ = clip_rows(work.to(torch.float64), self.clip_norm)
            gens = [ctx.generator("secagg_conditional_rounding", int(c)) for c in ctx.sampled_ids]
            work = conditional_round(clipped * self.scale, bound, gens) / self.scale
        out = parent(work, weights, inner_ctx)
        if signs is not None:
            out = self._unrotated(out, signs, d, updates)
        info = {**out.info, "rotation": self.rotation, "encoded_dimension": dim}
        return self._with_event(replace(out, info=info), dim, ctx.round)

    def _unrotated(
        self, out: TransportOutput, signs: Tensor, dimension: int, updates: Tensor
    ) -> TransportOutput:
        """The decoded sum back in the model's basis; error bounds restated for that basis."""
        assert out.update_sum is not None
        dtype = updates.dtype if updates.is_floating_point() else torch.float64
        total = unrotate(out.update_sum, signs, dimension).to(dtype)  # (d,)
        dp = signs.numel()
        rotated_error = float(out.info["max_decoding_error"])
        info = {
            **out.info,
            "max_decoding_error_rotated": rotated_error,
            "max_decoding_error": rotated_error * math.sqrt(dp),  # L2, hence per coordinate
            "rotation_clip_probability": rotation_clip_probability(
                self.clip_norm, self.clip_range, dp
            ),
        }
        return replace(out, update_sum=total, info=info)
