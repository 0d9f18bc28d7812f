"""Sign flipping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require

from .common import own_updates


@dataclass(frozen=True)
class SignFlip(ModelAttack):
    """Each malicious client sends its own honest update, negated and scaled: ``−magnitude · Δ``.

    Not omniscient: uses only ``ctx.own_updates``.

    Parameters
    ----------
    magnitude : float
        Scale of the flipped update (> 0).

    References
    ----------
    Li, Xu, Chen, Giannakis, Ling. "RSA: Byzantine-Robust Stochastic Aggregation Methods for
    Distributed Learning from Heterogeneous Datasets." AAAI 2019 (sign-flipping attack);
    Allouah et al. "Fixing by Mixing." AISTATS 2023 (SF attack in their benchmark).
    """

    magnitude: float = 1.0
    omniscient: ClassVar[bool] = False

    def __post_init__(self) -> None:
        require(self.magnitude > 0, "magnitude", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        return -self.magnitude * own_updates(ctx, "sign_flip")
