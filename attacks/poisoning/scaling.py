"""Scaling / model replacement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require

from .common import own_updates


@dataclass(frozen=True)
class Scaling(ModelAttack):
    """Model replacement: send the own update boosted by γ.

    With ``boost=None``, γ = n / b (clients this round ÷ malicious clients): under plain averaging
    with server learning rate 1 the malicious clients' joint contribution then replaces the global
    model update by their own (Bagdasaryan et al.'s γ = n/η, shared among b attackers). Combine with
    the ``backdoor`` data attack for a backdoor by model replacement. Not omniscient.

    Parameters
    ----------
    boost : float | None
        γ > 0, or ``None`` for n / b.

    References
    ----------
    Bagdasaryan, Veit, Hua, Estrin, Shmatikov. "How To Backdoor Federated Learning." AISTATS 2020.
    """

    boost: float | None = None
    omniscient: ClassVar[bool] = False

    def __post_init__(self) -> None:
        require(self.boost is None or self.boost > 0, "boost", "a positive number, or null for n/b")

    def factor(self, ctx: AttackContext) -> float:
        """The boost γ used this round."""
        if self.boost is not None:
            return self.boost
        return ctx.n_clients / max(ctx.n_malicious, 1)

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        return self.factor(ctx) * own_updates(ctx, "scaling")
