"""Adaptive (quantile-tracking) clipping for DP-FedAvg (Andrew et al. 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import ClientTransform, TransformContext, TransformOutput, require
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import Composed, gaussian_for_sum

from .accounting import expected_cohort, rows_for_fixed_denominator, sampled
from .kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    clip_rows,
    gaussian_noise,
    noise_generator,
)

CLIP_KEY = "clip_norm"


def update_noise_multiplier(noise_multiplier: float, count_noise_stddev: float) -> float:
    """z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2): the update's share of the total noise multiplier z when the
    clip-count query (sensitivity ½) carries noise σ_b (Andrew et al. 2021, section 3.1)."""
    rest = noise_multiplier**-2 - (2.0 * count_noise_stddev) ** -2
    if rest <= 0:
        raise ValueError("noise_multiplier must be < 2 · count_noise_stddev")
    return rest**-0.5


def quantile_step(
    clip_norm: float, noisy_fraction: float, target_quantile: float, learning_rate: float
) -> float:
    """Geometric update C ← C · exp(−η (b̄ − γ))."""
    return clip_norm * math.exp(-learning_rate * (noisy_fraction - target_quantile))


@dataclass(frozen=True)
class AdaptiveClipping(ClientTransform):
    """DP-FedAvg with a clip norm that tracks the ``target_quantile`` of the update norms.

    Each round, with current clip norm C (``initial_clip_norm`` at first): clients clip their
    updates to C and report b_i = 1[‖Δ_i‖ ≤ C]; the server releases the noisy fraction
    b̄ = (Σ(b_i − ½) + N(0, σ_b²))/qW + ½ and the update sum plus N(0, (z_Δ·C)² I), and sets
    C ← C·exp(−η(b̄ − γ)). The centred count has sensitivity ½, so its multiplier is 2σ_b; with
    z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) the two Gaussian queries on the same sample compose to exactly
    one Gaussian of multiplier z (``noise_multiplier``). z ≥ 2σ_b is refused (no noise would be
    left for the update). The round's event records both queries:
    ``Sampled(q, Composed((count, update)))``.

    Simulation shortcut (central trust model): a server transform cannot see a client transform's
    state in fedguard's round loop, so the server's two noise draws happen here, on the round's
    batch: ξ is split equally over the rows and the rows are rescaled by n/qW, so that the
    server's uniform mean is exactly the fixed-denominator estimate (S + ξ)/qW. Individual rows
    are not private (the server is trusted, as in the central model).

    Parameters
    ----------
    noise_multiplier : float
        z > 0, the total noise multiplier.
    initial_clip_norm : float
        C at the first round.
    target_quantile : float
        γ ∈ (0, 1) (0.5 in the paper).
    learning_rate : float
        η > 0 (0.2 in the paper).
    count_noise_stddev : float
        σ_b > z/2 (the paper suggests qW/20).

    References
    ----------
    Andrew, Thakkar, McMahan, Ramaswamy. "Differentially Private Learning with Adaptive
    Clipping." NeurIPS 2021.
    """

    noise_multiplier: float = 1.0
    initial_clip_norm: float = 0.1
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_noise_stddev: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "noise_multiplier",
            "initial_clip_norm",
            "learning_rate",
            "count_noise_stddev",
        ):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, "a finite number > 0")
        require(0 < self.target_quantile < 1, "target_quantile", "in (0, 1)")
        require(
            self.noise_multiplier < 2 * self.count_noise_stddev,
            "noise_multiplier",
            f"below 2 · count_noise_stddev = {2 * self.count_noise_stddev:g} (the clip-count "
            "query would take all the noise)",
        )

    @property
    def update_noise_multiplier(self) -> float:
        return update_noise_multiplier(self.noise_multiplier, self.count_noise_stddev)

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        check_sum_based_aggregation("adaptive_clipping", spec, components)
        if components.client_transforms[-1] is not self:
            raise IncompatibleError("adaptive_clipping must be the last client transform.")
        if components.server_transforms:
            raise IncompatibleError(
                "adaptive_clipping adds the server's noise itself; remove the server transforms."
            )
        if getattr(components.transport, "dropout_rate", 0.0):
            raise IncompatibleError(
                "adaptive_clipping needs every clipped update in the sum; set dropout_rate to 0."
            )

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        n, d = updates.shape
        clip = float(ctx.state.get(CLIP_KEY, self.initial_clip_norm))
        clipped, norms = clip_rows(updates, clip)  # (n, d), (n,)
        unclipped = (norms <= clip).to(torch.float64)  # (n,) b_i
        expected = expected_cohort(ctx.sampling)
        gen = noise_generator(self, ctx.round, "adaptive_clipping")
        count_noise = float(gaussian_noise((1,), self.count_noise_stddev, gen, torch.float64)[0])
        fraction = (float((unclipped - 0.5).sum()) + count_noise) / expected + 0.5
        z_update = self.update_noise_multiplier
        xi = gaussian_noise((d,), z_update * clip, gen, updates.dtype, updates.device)  # (d,)
        relation = str(ctx.sampling.get("neighbouring_relation", "add_remove"))
        event = sampled(
            Composed(
                (
                    gaussian_for_sum(0.5, self.count_noise_stddev, relation),  # Σ(b_i − ½)
                    gaussian_for_sum(clip, z_update * clip, relation),  # Σ clip(Δ_i)
                )
            ),
            ctx.sampling,
        )
        rows = rows_for_fixed_denominator(clipped + xi[None, :] / max(n, 1), ctx.sampling)
        new_clip = quantile_step(clip, fraction, self.target_quantile, self.learning_rate)
        state = {
            CLIP_KEY: new_clip,
            "noisy_unclipped_fraction": fraction,
            "clip_norm_used": clip,
        }
        return TransformOutput(values=rows, events=(event,), state=state)
