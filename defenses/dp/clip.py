"""L2 clipping of each client update (the first step of DP-FedAvg)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import (
    ClientTransform,
    TransformContext,
    TransformOutput,
    require_positive,
)

from .kernels import clip_rows


@dataclass(frozen=True)
class Clip(ClientTransform):
    """Scale every client update to L2 norm at most ``clip_norm``: ``Δ · min(1, C/‖Δ‖)``.

    Clipping alone is not a privacy mechanism (it records no event); it bounds the sensitivity
    of the sum that ``central_gaussian`` / ``distributed_gaussian`` then noise. The fraction of
    clipped clients is reported in the transform's state (``clipped_fraction``).

    Parameters
    ----------
    clip_norm : float
        C > 0, the L2 bound of each update.

    References
    ----------
    McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
    ICLR 2018.
    """

    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self, "clip_norm")

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        clipped, norms = clip_rows(updates, self.clip_norm)  # (n, d), (n,)
        frac = float((norms > self.clip_norm).float().mean()) if len(norms) else 0.0
        return TransformOutput(values=clipped, state={"clipped_fraction": frac})
