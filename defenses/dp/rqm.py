"""The Randomized Quantization Mechanism as a client transform (Youn et al. 2023)."""

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
    require,
    require_positive,
)
from fedguard.errors import IncompatibleError
from fedguard.privacy.events import ClientEvent, RandomizedQuantization

from .kernels import bind_run_options


def rqm_quantize(
    values: Tensor,
    clip: float,
    padding: float,
    levels: int,
    keep_probability: float,
    uniforms: Tensor,
) -> tuple[Tensor, Tensor]:
    """RQM of every entry of ``values`` (…,): returns the level indices and the levels' values.

    ``uniforms`` (3, …) in [0, 1): two drive the geometric gaps to the kept neighbours, one the
    randomized rounding. With cell j (B(j) ≤ x ≤ B(j+1)), the lower kept level is
    L = max(j − G, 0) and the upper U = min(j + 1 + G', m − 1) with G, G' ~ Geometric(q)
    failures — exactly P(L = 0) = (1 − q)^j, P(L = i) = q(1 − q)^(j − i), and the same upwards,
    independent; x goes to U with probability (x − B(L))/(B(U) − B(L)) (unbiased).
    """
    x = values.to(torch.float64).clamp(-clip, clip)
    top = clip + padding
    step = 2.0 * top / (levels - 1)
    j = torch.clamp(torch.floor((x + top) / step), 0, levels - 2)  # cell index
    if keep_probability >= 1.0:
        g_low = torch.zeros_like(x)
        g_up = torch.zeros_like(x)
    else:
        log1mq = math.log1p(-keep_probability)
        g_low = torch.floor(torch.log1p(-uniforms[0].to(torch.float64)) / log1mq)
        g_up = torch.floor(torch.log1p(-uniforms[1].to(torch.float64)) / log1mq)
    lower = torch.clamp(j - g_low, min=0)
    upper = torch.clamp(j + 1 + g_up, max=levels - 1)
    b_low = -top + lower * step
    b_up = -top + upper * step
    go_up = uniforms[2].to(torch.float64) < (x - b_low) / (b_up - b_low)
    index = torch.where(go_up, upper, lower)
    return index.to(torch.int64), torch.where(go_up, b_up, b_low)


@dataclass(frozen=True)
class RQM(ClientTransform):
    """Randomized quantization of every coordinate of each client's update (local DP).

    Coordinates are clipped to [−c, c] (``clip``) and quantized onto m = ``levels`` levels
    B(i) = −(c + Δ) + 2i(c + Δ)/(m − 1) (Δ = ``padding``); interior levels are kept with
    probability q (``keep_probability``), endpoints always; each value is rounded to its kept
    neighbours, unbiasedly. The client sends level indices: log2(m) bits per coordinate
    (reported in the state as ``bits_per_coordinate`` and ``bits_per_client``).

    Privacy: a local randomizer — the guarantee holds against anyone who sees the update,
    per coordinate for any change of its value within [−c, c]; the client's vector of d
    coordinates composes d-fold, and its rounds compose. Each participating client gets a
    :class:`~fedguard.privacy.events.ClientEvent` with
    ``RandomizedQuantization(..., coordinates=d)`` per round; its Rényi DP is computed exactly
    from the mechanism's output distribution by :mod:`fedguard.privacy.rqm`. No sampling
    amplification is claimed. Any aggregator may follow (post-processing).

    Parameters
    ----------
    clip : float
        c > 0.
    padding : float
        Δ > 0.
    levels : int
        m ≥ 2.
    keep_probability : float
        q ∈ (0, 1].

    References
    ----------
    Youn, Hu, Ziani, Abernethy. "Randomized Quantization is All You Need for Differential
    Privacy in Federated Learning." 2023.
    """

    clip: float = 0.05
    padding: float = 0.05
    levels: int = 16
    keep_probability: float = 0.5

    def __post_init__(self) -> None:
        require_positive(self, "clip", "padding")
        require(self.levels >= 2, "levels", "an integer >= 2")
        require(0 < self.keep_probability <= 1, "keep_probability", "in (0, 1]")

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        if components.client_transforms[-1] is not self:
            raise IncompatibleError("rqm must be the last client transform (it is the release).")

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        d = updates.shape[1]
        secure = getattr(self, "_secure_rng", False)
        rows = []
        for cid in ctx.client_ids:  # each client draws from its own stream
            if secure:
                import os

                import numpy as np

                raw = np.frombuffer(os.urandom(24 * d), dtype=np.uint64).reshape(3, d)
                u = torch.from_numpy((raw >> np.uint64(11)).astype(np.float64) * 2.0**-53)
            else:
                gen = ctx.round.generator("rqm", int(cid))
                u = torch.rand((3, d), generator=gen, dtype=torch.float64, device=gen.device)
            rows.append(u)
        uniforms = torch.stack(rows, dim=1).to(updates.device) if rows else torch.zeros(3, 0, d)
        _, values = rqm_quantize(
            updates, self.clip, self.padding, self.levels, self.keep_probability, uniforms
        )
        event = RandomizedQuantization(
            self.clip, self.padding, self.levels, self.keep_probability, coordinates=d
        )
        bits = math.log2(self.levels)
        return TransformOutput(
            values=values.to(updates.dtype),
            events=tuple(ClientEvent(int(c), event) for c in ctx.client_ids),
            state={"bits_per_coordinate": bits, "bits_per_client": bits * d},
        )
