"""Shared part of the secure-aggregation transports with distributed discrete noise.

Each client L2-clips its update to ``clip_norm`` (a ``clip`` client transform), the transport
encodes it on the lattice (``scale`` units per 1.0, stochastic rounding) and adds integer noise
before masking, so the server only ever sees the noisy sum. The variance each client adds is its
share of (z·C·scale)² over the expected cohort qW. The event is computed from the transport's
report of who actually got into the sum (``survivors``) minus the ``n_byzantine`` tolerance
(clients that may be dishonest and add no noise): fewer survivors, less noise, larger ε.

Lattice sensitivity. Stochastic rounding moves every coordinate by less than one unit, so a
clipped update ‖x‖₂ ≤ C becomes an integer vector of norm < C·scale + √d; that deterministic
bound is used (add/remove; twice that for replace-one). Conditional rounding and a random rotation
(Kairouz et al. 2021) would tighten it to ≈ C·scale + O(√(log 1/β)) with a flatter vector; they
are not implemented here, so the √d term is paid. The RDP bounds (Kairouz et al. Proposition 14;
Agarwal et al. Theorem 3.5) live in :mod:`fedguard.privacy.discrete`. The server knows the round's
participants under secure aggregation, so no amplification by sampling is claimed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from torch import Tensor

from defenses.dp.central_gaussian import check_clipped_by
from defenses.dp.kernels import check_sum_based_aggregation
from fedguard.api import TransportOutput, require
from fedguard.core.sampling import sampling_description
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import PrivacyEvent
from fedguard.types import RoundContext


def lattice_l2_sensitivity(clip_norm: float, scale: float, dimension: int, relation: str) -> float:
    """‖Δ‖₂ bound of one client's encoded integer vector: (C·scale + √d), ×2 for replace-one."""
    one = clip_norm * scale + math.sqrt(dimension)
    return one if relation == "add_remove" else 2.0 * one


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
    clip_range: float

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
        out = parent(updates, weights, ctx)
        return self._with_event(out, updates.shape[1], ctx.round)
