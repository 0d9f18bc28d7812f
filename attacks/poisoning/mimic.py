"""Mimic attack."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require

from .common import check_honest, repeat_rows


def mimic_target(honest: Tensor) -> int:
    """Index of the honest update farthest from the mean along the top principal direction
    (largest |⟨x_i − μ, z⟩|, z the top right singular vector of the centred updates)."""
    x = honest.double()
    centred = x - x.mean(dim=0, keepdim=True)
    if not bool(centred.abs().sum() > 0):
        return 0
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return int(torch.argmax((centred @ vh[0]).abs()))


@dataclass(frozen=True)
class Mimic(ModelAttack):
    """All malicious clients copy one honest client's update, over-weighting its data.

    The copied client is ``target_row`` when given, else the honest update with the largest
    deviation from the mean along the top principal direction (:func:`mimic_target`). Convention:
    the paper fixes the target after a warm-up phase; this attack is stateless and re-chooses it
    each round from that round's honest updates.

    Parameters
    ----------
    target_row : int | None
        Row of ``honest`` to copy, or ``None`` for the principal-direction choice.

    References
    ----------
    Karimireddy, He, Jaggi. "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing."
    ICLR 2022 (mimic attack).
    """

    target_row: int | None = None

    def __post_init__(self) -> None:
        require(
            self.target_row is None or self.target_row >= 0,
            "target_row",
            "a non-negative row index, or null",
        )

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "mimic")
        row = self.target_row if self.target_row is not None else mimic_target(x)
        require(
            row < x.shape[0], "target_row", f"below the number of honest updates ({x.shape[0]})"
        )
        return repeat_rows(x[row], ctx.n_malicious)
