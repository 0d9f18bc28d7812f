"""Shared part of the secure-aggregation transports with distributed discrete noise.

Each client L2-clips its update to ``clip_norm`` (a ``clip`` client transform), the transport
encodes it on the lattice (``scale`` units per 1.0, stochastic rounding) and adds integer noise
before masking, so the server only ever sees the noisy sum. The variance each client adds is its
share of (z·C·scale)² over the expected cohort qW. The event is computed from the transport's
report of who actually got into the sum (``survivors``) minus the ``n_byzantine`` tolerance
(clients that may be dishonest and add no noise): fewer survivors, less noise, larger ε.

Lattice sensitivity. Stochastic rounding moves every coordinate by less than one unit, so a
clipped update ‖x‖₂ ≤ C becomes an integer vector of norm < C·scale + √d; that deterministic
bound is used by default (add/remove; twice that for replace-one). With
``conditional_rounding_beta`` β, each client re-draws its stochastic rounding until the norm is at
most √(min(c² + d/4 + √(2 ln(1/β))·(c + √d/2), (c + √d)²)), c = C·scale (Kairouz et al. 2021,
conditional randomized rounding; β is the per-draw failure probability, which only costs
retries and a tiny bias, never privacy), and that smaller bound is the sensitivity. The random
rotation of that paper flattens vectors so that modular clipping with few bits rarely wraps;
here the bit width is chosen so that a wrap has probability ≤ ``max_wrap_probability``
regardless, so the rotation is not implemented. The RDP bounds (Kairouz et al. Proposition 14;
Agarwal et al. Theorem 3.5) live in :mod:`fedguard.privacy.discrete`. The server knows the round's
participants under secure aggregation, so no amplification by sampling is claimed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from defenses.dp.central_gaussian import check_clipped_by
from defenses.dp.kernels import check_sum_based_aggregation, clip_rows
from fedguard.api import TransportOutput, require
from fedguard.core.sampling import sampling_description
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import PrivacyEvent
from fedguard.types import RoundContext


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


class DistributedNoiseMixin:
    """Binds the run's expected cohort, relation and tolerance; files the round's event."""

    noise_multiplier: float
    clip_norm: float
    expected_clients: float | None
    conditional_rounding_beta: float | None
    clip_range: float
    scale: float

    def _validate_noise(self) -> None:
        require(
            math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0,
            "noise_multiplier",
            "a finite number > 0",
        )
        require(
            math.isfinite(self.clip_norm) and self.clip_norm > 0, "clip_norm", "a finite number > 0"
        )
        require(
            self.clip_range >= self.clip_norm,
            "clip_range",
            f"at least clip_norm = {self.clip_norm} (the L2-clipped update must not be clipped "
            "again coordinate-wise)",
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
                self.clip_range * self.scale >= self.clip_norm * self.scale + 1.0,
                "clip_range",
                "at least clip_norm + 1/scale with conditional rounding",
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

    def lattice_sensitivity(self, dimension: int) -> float:
        """L2 sensitivity of the encoded sum under the bound relation (see the module doc)."""
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
        if self.conditional_rounding_beta is not None:
            if weights.numel() and not bool((weights == weights.reshape(-1)[0]).all()):
                raise IncompatibleError(
                    "conditional rounding needs uniform weights (clients.weighting: uniform)."
                )
            d = updates.shape[1]
            bound = conditional_rounding_bound(
                self.clip_norm, self.scale, d, self.conditional_rounding_beta
            )
            clipped, _ = clip_rows(updates.to(torch.float64), self.clip_norm)
            gens = [ctx.generator("secagg_conditional_rounding", int(c)) for c in ctx.sampled_ids]
            updates = conditional_round(clipped * self.scale, bound, gens) / self.scale
        out = parent(updates, weights, ctx)
        return self._with_event(out, updates.shape[1], ctx.round)
