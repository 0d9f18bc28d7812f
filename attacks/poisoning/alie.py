"""A Little Is Enough (ALIE)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require
from fedguard.errors import ConfigError

from .common import check_honest, repeat_rows


def alie_z(n_clients: int, n_malicious: int) -> float:
    """The paper's z: s = ⌊n/2 + 1⌋ − f, z = Φ⁻¹((n − s)/n).

    n = 25, f = 5 → 0.4677; n = 10, f = 2 → 0.2533.
    """
    # Φ⁻¹ is scipy.stats.norm.ppf's own kernel; scipy.special loads in a third of the time of
    # scipy.stats (every matrix worker pays it), and only here, not when the module is imported
    from scipy.special import ndtri

    s = (n_clients // 2 + 1) - n_malicious
    if not 0 <= s < n_clients:
        raise ConfigError(
            f"ALIE needs 0 <= ⌊n/2 + 1⌋ − n_malicious < n; got n = {n_clients}, "
            f"n_malicious = {n_malicious}."
        )
    return float(ndtri((n_clients - s) / n_clients))


@dataclass(frozen=True)
class ALIE(ModelAttack):
    """A little is enough: every malicious client sends ``μ − z·σ``.

    μ and σ are the coordinate-wise mean and standard deviation (n − 1 denominator) of the honest
    updates; z is the paper's ``Φ⁻¹((n − s)/n)`` with ``s = ⌊n/2 + 1⌋ − f`` (n clients this round,
    f malicious), see :func:`alie_z`. Sign convention: the paper perturbs *gradients* by ``+zσ``;
    an update here is a model delta (≈ −lr · gradient), so the same harmful direction is ``−zσ``.

    Parameters
    ----------
    z_override : float | None
        Use this z instead of the paper's (> 0).

    References
    ----------
    Baruch, Baruch, Goldberg. "A Little Is Enough: Circumventing Defenses For Distributed
    Learning." NeurIPS 2019.
    """

    z_override: float | None = None

    def __post_init__(self) -> None:
        require(
            self.z_override is None or self.z_override > 0,
            "z_override",
            "a positive number, or null for the paper's z",
        )

    def z(self, ctx: AttackContext) -> float:
        """The z used this round."""
        if self.z_override is not None:
            return self.z_override
        return alie_z(ctx.n_clients, ctx.n_malicious)

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "alie")
        mu = x.mean(dim=0)
        sigma = x.std(dim=0, correction=1) if x.shape[0] > 1 else x.new_zeros(x.shape[1])
        return repeat_rows(mu - self.z(ctx) * sigma, ctx.n_malicious)
