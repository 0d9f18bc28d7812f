"""Fang et al.'s aggregator-specific local model poisoning (full knowledge)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require

from .common import check_honest, pairwise_sq_distances, repeat_rows

TARGETS = ("krum", "trimmed_mean", "median")


def fang_trimmed_mean(
    honest: Tensor, n_malicious: int, spread: float, generator: torch.Generator
) -> Tensor:
    """The attack on trimmed mean and median.

    With s = sign(mean of honest) (s = 0 treated as +1) and per coordinate the honest extremes
    ``w_max``, ``w_min``: where s > 0 each malicious value is drawn uniformly from
    ``[w_min/b, w_min]`` if ``w_min > 0`` else ``[b·w_min, w_min]``; where s < 0 from
    ``[w_max, b·w_max]`` if ``w_max > 0`` else ``[w_max/b, w_max]`` (b = ``spread``), i.e. just
    beyond the honest extreme opposite to the benign direction.

    Returns
    -------
    Tensor
        ``(n_malicious, d)``.
    """
    x = honest
    s = torch.sign(x.mean(dim=0))  # (d,)
    w_max = x.max(dim=0).values
    w_min = x.min(dim=0).values
    low_pos = torch.where(w_min > 0, w_min / spread, w_min * spread)  # s > 0 branch
    high_pos = w_min
    low_neg = w_max
    high_neg = torch.where(w_max > 0, w_max * spread, w_max / spread)  # s < 0 branch
    low = torch.where(s < 0, low_neg, low_pos)
    high = torch.where(s < 0, high_neg, high_pos)
    u = torch.rand((n_malicious, x.shape[1]), generator=generator, dtype=torch.float64)
    return (low[None, :] + u.to(x.dtype) * (high - low)[None, :]).to(x.dtype)


def krum_selects_malicious(all_updates: Tensor, n_malicious: int, n_byzantine: int) -> bool:
    """Whether Krum (n − f − 2 neighbours) on ``[malicious; honest]`` picks a malicious row."""
    n = all_updates.shape[0]
    d2 = pairwise_sq_distances(all_updates.double())
    k = n - n_byzantine - 2
    if k <= 0:
        return True
    d2.fill_diagonal_(float("inf"))
    scores = torch.topk(d2, k=k, dim=1, largest=False).values.sum(dim=1)
    return int(torch.argmin(scores)) < n_malicious


def fang_krum_lambda_bound(honest: Tensor, n_clients: int, n_malicious: int) -> float:
    """Fang et al.'s upper bound on λ for the Krum attack (deltas, so D(w_i, w_Re) = ‖Δ_i‖):
    ``1/((m − 2c − 1)√d) · min_i Σ_{l ∈ Γ̃(i)} ‖Δ_l − Δ_i‖ + 1/√d · max_i ‖Δ_i‖``, Γ̃(i) the
    m − c − 2 honest updates closest to Δ_i."""
    x = honest.double()
    h, d = x.shape
    dist = pairwise_sq_distances(x).sqrt()
    k = min(max(n_clients - n_malicious - 2, 0), h - 1)
    dist.fill_diagonal_(float("inf"))
    near = (
        torch.topk(dist, k=k, dim=1, largest=False).values.sum(dim=1) if k > 0 else dist[:, 0] * 0
    )
    denominator = max(n_clients - 2 * n_malicious - 1, 1)
    first = float(near.min()) / (denominator * math.sqrt(d))
    return first + float(torch.linalg.vector_norm(x, dim=1).max()) / math.sqrt(d)


@dataclass(frozen=True)
class Fang(ModelAttack):
    """Directed-deviation attack tailored to Krum, trimmed mean or median (full knowledge).

    *Trimmed mean / median*: see :func:`fang_trimmed_mean` (b = ``spread`` = 2 in the paper).
    *Krum*: all malicious clients send ``−λ·s`` (s = sign of the honest mean; the paper's
    ``w_Re − λ s`` in parameters, here as a delta); λ starts at
    :func:`fang_krum_lambda_bound` and is halved until Krum (n − f − 2 neighbours,
    f = ``ctx.n_byzantine``, or the number of malicious clients when that is 0) selects a
    malicious update, or until λ < ``min_lambda`` (that last λ is then used).
    Convention: the c − 1 companions are exact copies of the first malicious update.

    Parameters
    ----------
    target : str
        ``"krum"``, ``"trimmed_mean"`` or ``"median"``.
    spread : float
        b > 1 of the trimmed-mean/median attack.
    min_lambda : float
        Threshold that stops the λ halving of the Krum attack.

    References
    ----------
    Fang, Cao, Jia, Gong. "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning."
    USENIX Security 2020.
    """

    target: str = "trimmed_mean"
    spread: float = 2.0
    min_lambda: float = 1e-5

    def __post_init__(self) -> None:
        require(self.target in TARGETS, "target", "'krum', 'trimmed_mean' or 'median'")
        require(self.spread > 1, "spread", "a number > 1")
        require(self.min_lambda > 0, "min_lambda", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, "fang")
        b = ctx.n_malicious
        if self.target != "krum":
            return fang_trimmed_mean(x, b, self.spread, ctx.generator)
        s = torch.sign(x.mean(dim=0))
        f = ctx.n_byzantine if ctx.n_byzantine > 0 else b
        lam = fang_krum_lambda_bound(x, ctx.n_clients, b)
        while True:
            crafted = repeat_rows(-lam * s, b)
            if lam < self.min_lambda or krum_selects_malicious(torch.cat([crafted, x]), b, f):
                return crafted
            lam = lam / 2
