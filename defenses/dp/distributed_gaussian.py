"""Distributed Gaussian noise for DP-FedAvg: every client adds its share of the variance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import (
    ClientTransform,
    TransformContext,
    TransformOutput,
    require_positive,
)
from fedguard.errors import IncompatibleError

from .accounting import expected_cohort, round_gaussian_event, rows_for_fixed_denominator
from .kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    clip_rows,
    gaussian_noise,
    noise_generator,
)


def honest_noise_stddev(
    noise_multiplier: float, clip_norm: float, expected: float, n_rows: int, n_untrusted: int
) -> float:
    """Std of the noise on the sum that honest senders are guaranteed to have added.

    Each client adds N(0, (zC)²/qW); with ``n_rows`` senders of which up to ``n_untrusted`` may
    not be honest (their noise may be missing or replaced), the sum carries at least
    ``(n_rows − n_untrusted)·(zC)²/qW``: fewer honest senders, less noise. 0 if none is honest.
    """
    honest = max(n_rows - n_untrusted, 0)
    return noise_multiplier * clip_norm * math.sqrt(honest / expected)


@dataclass(frozen=True)
class DistributedGaussian(ClientTransform):
    """Distributed DP-FedAvg: each client clips its update to C and adds N(0, (zC)²/qW · I).

    The shares sum to the central mechanism's N(0, (zC)²) when the expected cohort qW of honest
    clients sends; the ledger records only the variance that honest senders actually added:
    ``(n − f)·(zC)²/qW`` for n senders of which up to f = ``n_byzantine`` (the defense's
    tolerance; the transform does not know who is malicious) may have replaced their noisy
    update. Fewer senders than expected → less noise → a larger ε, recorded as such. Rows are
    rescaled by n/qW so that the server's uniform mean is the fixed-denominator estimate
    Σ/qW (McMahan et al. 2018).

    Privacy against the server needs secure aggregation (each row alone carries only a 1/qW share
    of the variance); over the plain transport the guarantee holds for the released aggregate.
    Dropouts inside the transport are not visible to a client transform, so a transport with
    ``dropout_rate > 0`` is refused (the discrete ``secagg_*`` transports of this package account
    survivors themselves).

    Parameters
    ----------
    noise_multiplier : float
        z > 0, the target noise std on the sum over ``clip_norm``.
    clip_norm : float
        C > 0; each client clips its own update.

    References
    ----------
    McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
    ICLR 2018.
    Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning
    with Secure Aggregation." ICML 2021 (noise shares, accounting for dropouts).
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        object.__setattr__(self, "_n_untrusted", int(spec.n_byzantine))
        check_sum_based_aggregation("distributed_gaussian", spec, components)
        if components.client_transforms[-1] is not self:
            raise IncompatibleError(
                "distributed_gaussian must be the last client transform (a later transform would "
                "change the clipped, noised update)."
            )
        if getattr(components.transport, "dropout_rate", 0.0):
            raise IncompatibleError(
                "distributed_gaussian cannot see which clients drop out inside the transport; "
                "set dropout_rate to 0 or use a secagg_discrete_gaussian / secagg_skellam "
                "transport, which accounts the survivors' noise."
            )

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        n, d = updates.shape
        clipped, _ = clip_rows(updates, self.clip_norm)  # (n, d)
        expected = expected_cohort(ctx.sampling)
        share = self.noise_multiplier * self.clip_norm / math.sqrt(expected)
        rows = []
        for cid in ctx.client_ids:  # each client draws from its own stream
            gen = noise_generator(self, ctx.round, "distributed_gaussian", int(cid))
            rows.append(gaussian_noise((d,), share, gen, updates.dtype, updates.device))
        noise = torch.stack(rows) if rows else updates.new_zeros((0, d))  # (n, d)
        untrusted = int(getattr(self, "_n_untrusted", 0))
        stddev = honest_noise_stddev(self.noise_multiplier, self.clip_norm, expected, n, untrusted)
        events = (round_gaussian_event(self.clip_norm, stddev, ctx.sampling),) if stddev > 0 else ()
        if not events:
            raise IncompatibleError(
                f"distributed_gaussian: none of the {n} senders of round {ctx.round.round + 1} is "
                f"guaranteed honest (n_byzantine = {untrusted}), so no noise can be accounted."
            )
        return TransformOutput(
            values=rows_for_fixed_denominator(clipped + noise, ctx.sampling),
            events=events,
            state={"honest_noise_stddev_on_sum": stddev},
        )
