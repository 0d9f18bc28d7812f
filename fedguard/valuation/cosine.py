"""Cosine reputation of client updates (RFFL; CGSV-style gradient alignment).

References
----------
.. [1] X. Xu, L. Lyu. "A Reputation Mechanism Is All You Need: Collaborative Fairness and
   Adversarial Robustness in Federated Learning." ICML Workshop FL 2021 (RFFL).
.. [2] X. Xu, L. Lyu, X. Ma, C. Miao, C. S. Foo, B. K. H. Low. "Gradient Driven Rewards to Guarantee
   Fairness in Collaborative Machine Learning." NeurIPS 2021 (CGSV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.valuation.base import (
    Scores,
    Valuation,
    bootstrap_indices,
    sampled_scores,
    validate_common,
)
from fedguard.valuation.game import Game, RoundGame
from fedguard.valuation.reconstruction import MultiRoundReconstruction, RoundUpdates


def round_cosines(updates: RoundUpdates, n_players: int) -> Tensor:
    """``(n,)`` cosine of each participant's update with the round's FedAvg aggregate; NaN for
    clients not in the round, 0 for a zero update."""
    deltas = updates.deltas.to(torch.float64)  # (m, d)
    aggregate = updates.weights() @ deltas  # (d,)
    norms = deltas.norm(dim=1) * aggregate.norm()  # (m,)
    cos = torch.where(norms > 0, deltas @ aggregate / norms.clamp(min=1e-300), 0.0)  # (m,)
    out = torch.full((n_players,), float("nan"), dtype=torch.float64)
    out[updates.client_ids] = cos
    return out


def require_updates(game: Game | RoundGame, method: str) -> MultiRoundReconstruction:
    if not isinstance(game, MultiRoundReconstruction):
        raise ConfigError(
            f"{method} needs the clients' saved updates: use a reconstruction utility on a run "
            "saved with --save-updates."
        )
    return game


def reputation(cosines: Tensor, decay: float, initial: float) -> Tensor:
    """RFFL recursion ``r ← decay·r + (1 − decay)·cos`` over the rounds each client took part in.

    ``cosines (..., R, n)`` with NaN where absent → ``(..., n)``, in closed form:
    ``r_i = decay^{k_i} r_0 + (1 − decay) Σ_t decay^{(later participations)} cos_{t,i}``.
    """
    present = ~torch.isnan(cosines)  # (..., R, n)
    p = present.to(torch.float64)
    later = torch.flip(torch.cumsum(torch.flip(p, [-2]), dim=-2), [-2]) - p  # (..., R, n)
    weights = (1.0 - decay) * decay**later * p
    k = p.sum(dim=-2)  # (..., n)
    return decay**k * initial + (weights * torch.nan_to_num(cosines)).sum(dim=-2)


@dataclass(frozen=True)
class CosineReputation(Valuation):
    """Reputation from the alignment of each client's update with the aggregate.

    Per round, ``cos_i = cos(Δ_i, Σ_j w_j Δ_j)`` with FedAvg weights (the aggregate of the saved
    updates; a zero update has cosine 0); ``r_i ← decay·r_i + (1 − decay)·cos_i`` (RFFL's
    0.95/0.05), from ``initial_reputation``, updated only in rounds the client took part in. A
    proxy: values are reputations in ``[−1, 1]``, not utility shares. Bootstrap over rounds (kept in
    order).
    """

    decay: float = 0.95
    initial_reputation: float = 0.0
    n_bootstrap: int = 200
    confidence: float = 0.95

    target = "proxy"

    def __post_init__(self) -> None:
        validate_common(None, self.n_bootstrap, self.confidence)
        require(0.0 <= self.decay < 1.0, "decay", "in [0, 1)")
        require(-1.0 <= self.initial_reputation <= 1.0, "initial_reputation", "in [-1, 1]")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        rg = require_updates(game, "cosine")
        n, rounds = rg.n_players, rg.n_rounds
        cos = torch.stack([round_cosines(rg.round_updates(r), n) for r in range(rounds)])  # (R, n)
        estimate = reputation(cos, self.decay, self.initial_reputation)
        idx = bootstrap_indices(rounds, self.n_bootstrap, generator).sort(dim=1).values  # (B, R)
        replicates = reputation(cos[idx], self.decay, self.initial_reputation)  # (B, n)
        return sampled_scores(
            "cosine",
            estimate,
            replicates,
            n_units=rounds,
            n_evaluations=0,
            n_queries=0,
            target="proxy",
            confidence=self.confidence,
            evaluation_unit="none",
        )
