"""Pure kernels of the DP mechanisms: clipping, Gaussian noise (seeded or from the OS CSPRNG),
and the sensitivity of the aggregate each mechanism is calibrated for.

Noise source. By default noise comes from the component's own seeded stream of the round
(``RoundContext.generator``): a run is reproducible from its seed, which also means anyone who
knows the seed can subtract the noise — such runs are **simulations**. With
``privacy.secure_rng: true`` every mechanism draws its noise from the operating system's CSPRNG
(``os.urandom``, turned into standard normals by the Box–Muller transform in float64); those runs
are not reproducible, by design.

References
----------
McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
ICLR 2018 (clipping, fixed-denominator estimator).
Box, Muller. "A Note on the Generation of Random Normal Deviates." Ann. Math. Stat. 1958.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedguard.errors import IncompatibleError


def clip_rows(updates: Tensor, clip_norm: float) -> tuple[Tensor, Tensor]:
    """Scale each row of ``updates`` (n, d) to L2 norm at most ``clip_norm``.

    Returns the clipped rows ``(n, d)`` and the rows' norms before clipping ``(n,)``.
    ``x · min(1, C / ‖x‖)``; a zero row stays zero.
    """
    norms = torch.linalg.vector_norm(updates, dim=1)  # (n,)
    factor = torch.clamp(clip_norm / norms.clamp_min(1e-30), max=1.0)  # (n,)
    return updates * factor[:, None], norms


def secure_standard_normal(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Standard normals from ``os.urandom`` (Box–Muller on 53-bit uniforms), float64 maths."""
    count = math.prod(shape)
    half = (count + 1) // 2
    raw = np.frombuffer(os.urandom(16 * half), dtype=np.uint64).reshape(2, half)
    u1 = ((raw[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    u2 = (raw[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    radius = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([radius * np.cos(2 * math.pi * u2), radius * np.sin(2 * math.pi * u2)])
    return torch.from_numpy(z[:count].reshape(shape)).to(dtype)


def gaussian_noise(
    shape: tuple[int, ...],
    stddev: float,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """N(0, stddev² I) of ``shape``: from ``generator``, or from the OS CSPRNG when it is None."""
    if generator is None:
        z = secure_standard_normal(shape, torch.float64)
    else:
        z = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return (stddev * z).to(dtype=dtype, device=device)


def noise_generator(
    component: Any, ctx: Any, stream: str, client: int = -1
) -> torch.Generator | None:
    """The seeded generator of ``stream`` this round, or None if the run asked for the CSPRNG.

    ``component._secure_rng`` is set by :func:`bind_run_options` from ``privacy.secure_rng``.
    """
    if getattr(component, "_secure_rng", False):
        return None
    return ctx.generator(stream, client)


def bind_run_options(component: Any, spec: Any) -> None:
    """Copy ``privacy.secure_rng`` from the run spec onto ``component`` (not a parameter: it does
    not change what the mechanism computes, only where its randomness comes from)."""
    secure = bool(getattr(getattr(spec, "privacy", None), "secure_rng", False))
    object.__setattr__(component, "_secure_rng", secure)


# --------------------------------------------------------------------------------------------
# Sensitivity follows the aggregator


#: Aggregators whose output is a known linear function of the sum of (uniformly weighted) rows.
SUM_BASED = ("mean",)


def check_sum_based_aggregation(mechanism: str, spec: Any, components: Any) -> None:
    """Raise :class:`IncompatibleError` unless the round's aggregate is the uniform mean of the
    rows (so that the sum of clipped updates — the query the noise is calibrated for — is what
    the server releases).

    A robust rule's output can move further than the clipped mean's when one client changes
    (Krum returns one client's whole update; a median can jump between clients' values), and a
    pre-aggregator mixes rows; no bound is derived for those, so they are refused, as is
    weighting by sample counts (the weights are data-dependent and unbounded).
    """
    aggregator = components.aggregator
    name = aggregator.registry_name or type(aggregator).__name__
    if name not in SUM_BASED:
        raise IncompatibleError(
            f"{mechanism} is calibrated for the sum of clipped updates, but aggregator {name!r} "
            "has no derived L2 sensitivity bound (its output can move further than the clipped "
            "mean's when one client changes); use aggregator 'mean'."
        )
    if components.preaggregators:
        pre = components.preaggregators[0]
        raise IncompatibleError(
            f"{mechanism} is calibrated for the sum of clipped updates; pre-aggregator "
            f"{pre.registry_name or type(pre).__name__!r} mixes clients' rows and has no derived "
            "sensitivity bound."
        )
    if spec.clients.weighting != "uniform":
        raise IncompatibleError(
            f"{mechanism} needs clients.weighting 'uniform': weighting by sample counts makes "
            "one client's influence on the aggregate data-dependent and unbounded."
        )


def client_transform_names(components: Any) -> list[str]:
    return [t.registry_name or type(t).__name__ for t in components.client_transforms]


__all__ = [
    "SUM_BASED",
    "bind_run_options",
    "check_sum_based_aggregation",
    "client_transform_names",
    "clip_rows",
    "gaussian_noise",
    "noise_generator",
    "secure_standard_normal",
]
