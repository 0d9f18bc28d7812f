"""Gaussian noise updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require


@dataclass(frozen=True)
class GaussianAttack(ModelAttack):
    """Each malicious client sends an independent ``N(0, std² I)`` vector.

    Not omniscient; draws from ``ctx.generator`` only.

    Parameters
    ----------
    std : float
        Standard deviation per coordinate (> 0).

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent." NeurIPS 2017 (Gaussian Byzantine workers).
    """

    std: float = 1.0
    omniscient: ClassVar[bool] = False

    def __post_init__(self) -> None:
        require(self.std > 0, "std", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        d = ctx.global_params.numel() if ctx.global_params.numel() else honest.shape[1]
        noise = torch.randn((ctx.n_malicious, d), generator=ctx.generator, dtype=torch.float64)
        return (self.std * noise).to(honest.dtype)
