"""Inner-product manipulation (IPM)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require

from .common import check_honest, repeat_rows


@dataclass(frozen=True)
class IPM(ModelAttack):
    """Inner-product manipulation: every malicious client sends ``−ε · mean(honest)``.

    Small ε (≈ 0.1) slips past median/Krum-type rules; ε > (n − f)/f makes the plain mean point
    against the honest direction.

    Parameters
    ----------
    epsilon : float
        ε > 0.

    References
    ----------
    Xie, Koyejo, Gupta. "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
    Manipulation." UAI 2019.
    """

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        require(self.epsilon > 0, "epsilon", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "ipm")
        return repeat_rows(-self.epsilon * x.mean(dim=0), ctx.n_malicious)
