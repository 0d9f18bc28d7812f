"""DP-BREM: central Gaussian noise on the aggregate of clipped client momenta (Gu et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fedguard.api import (
    ServerTransform,
    TransformContext,
    TransformOutput,
    require,
    require_positive,
)
from fedguard.errors import IncompatibleError

from .accounting import expected_cohort, round_gaussian_event
from .kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    client_transform_names,
    gaussian_noise,
    noise_generator,
)

FORMS = ("exponential", "heavy_ball")


def momentum_sensitivity(clip_norm: float, beta: float, contributions: int, form: str) -> float:
    """Largest L2 norm of a client momentum built from ``contributions`` clipped updates.

    With m ← β m + w·g (w = 1 − β for ``exponential``, 1 for ``heavy_ball``), m = 0 initially
    and ‖g‖ ≤ C, the momentum after k contributions is m = Σ_{s<k} w β^(k−1−s) g_s, so
    ‖m‖ ≤ w C Σ_{s<k} β^s = w C (1 − β^k)/(1 − β): C(1 − β^k) (exponential; never above C) or
    C(1 − β^k)/(1 − β) (heavy ball; up to C/(1 − β)). The bound is reached when every g_s is
    the same vector of norm C, so it is tight. It grows with k, so the round index bounds a
    client's number of contributions (a client's momentum does not decay while it is not sampled).
    """
    weight = 1.0 - beta if form == "exponential" else 1.0
    if beta == 0.0:
        return weight * clip_norm
    return weight * clip_norm * (1.0 - beta**contributions) / (1.0 - beta)


@dataclass(frozen=True)
class DPBREM(ServerTransform):
    """Noise on the sum of client momenta, calibrated to the momentum sensitivity.

    Clients clip their update to C (``clip`` transform) and send their momentum of clipped updates
    (``momentum`` transform after ``clip``, with this ``beta`` and ``form``). A client's momentum
    is a weighted sum of all its past clipped updates, so its contribution to round t's sum has
    sensitivity S_t = :func:`momentum_sensitivity` (C, β, t + 1, form) — the sum over past rounds'
    contributions — rather than C. The server adds N(0, (z·S_t)² I) to the sum and releases the
    fixed-denominator estimate (S + ξ)/qW; the event of round t is the sampled Gaussian of
    multiplier z for sensitivity S_t (×2 under replace-one), so every round costs the same ε
    while the noise follows S_t. Poisson amplification holds per round: a client that is not
    sampled sends nothing that round, and its momentum is a function of its own data and the
    public past models (adaptive composition).

    This transform is the clip-then-momentum variant: it noises the uniform mean only, so a
    robust aggregator is refused as ``incompatible``. The paper's construction — one noised
    centered-clipping step on the momenta around the previous noised output, sensitivity τ per
    round whatever the momentum history — is the aggregator ``dp_brem_cc``
    (:class:`defenses.dp.dp_brem_cc.DPBREMCenteredClipping`); use it for robustness.

    Parameters
    ----------
    noise_multiplier : float
        z > 0, noise std over the momentum sensitivity.
    clip_norm : float
        C > 0, the clip norm of the updates (the ``clip`` transform's, or larger).
    beta : float
        β ∈ [0, 1), the momentum transform's.
    form : str
        ``"exponential"`` or ``"heavy_ball"``, the momentum transform's.

    References
    ----------
    Gu, Xiong, Wang, Jia, Alemi, Kariyappa, et al. "DP-BREM: Differentially-Private and
    Byzantine-Robust Federated Learning with Client Momentum." USENIX Security 2025
    (arXiv:2306.12608).
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    beta: float = 0.9
    form: str = "exponential"

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        require(0 <= self.beta < 1, "beta", "in [0, 1)")
        require(self.form in FORMS, "form", "'exponential' or 'heavy_ball'")

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        aggregator = components.aggregator
        if (aggregator.registry_name or "") != "mean":
            raise IncompatibleError(
                "dp_brem noises the mean of clipped momenta and has no sensitivity bound for "
                f"aggregator {aggregator.registry_name or type(aggregator).__name__!r}; for DP-BREM "
                "with centered clipping use aggregator 'dp_brem_cc' (noise inside the robust "
                "rule) without this server transform."
            )
        check_sum_based_aggregation("dp_brem", spec, components)
        names = client_transform_names(components)
        if names[-2:] != ["clip", "momentum"]:
            raise IncompatibleError(
                "dp_brem needs the client transforms to end with 'clip' then 'momentum' (the "
                f"momentum of clipped updates); got {names or 'none'}."
            )
        clip, momentum = components.client_transforms[-2:]
        if clip.clip_norm > self.clip_norm * (1 + 1e-12):
            raise IncompatibleError(
                f"dp_brem is calibrated for clip_norm {self.clip_norm}, but the clip transform "
                f"clips to {clip.clip_norm}."
            )
        if momentum.beta != self.beta or momentum.form != self.form:
            raise IncompatibleError(
                f"dp_brem's beta/form ({self.beta}, {self.form}) must match the momentum "
                f"transform's ({momentum.beta}, {momentum.form})."
            )

    def sensitivity(self, round_index: int) -> float:
        """S_t for 0-based round ``round_index`` (at most ``round_index + 1`` contributions)."""
        return momentum_sensitivity(self.clip_norm, self.beta, round_index + 1, self.form)

    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        n = len(ctx.client_ids)
        total = aggregate * n  # (d,) the sum of momenta
        s_t = self.sensitivity(ctx.round.round)
        stddev = self.noise_multiplier * s_t
        gen = noise_generator(self, ctx.round, "dp_brem")
        noise = gaussian_noise(
            tuple(aggregate.shape), stddev, gen, aggregate.dtype, aggregate.device
        )
        event = round_gaussian_event(s_t, stddev, ctx.sampling)
        return TransformOutput(
            values=(total + noise) / expected_cohort(ctx.sampling),
            events=(event,),
            state={"momentum_sensitivity": s_t, "noise_stddev_on_sum": stddev},
        )
