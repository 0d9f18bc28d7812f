"""FedCE contribution estimates in gradient space and data space.

References
----------
.. [1] M. Jiang, H. R. Roth, W. Li, D. Yang, C. Zhao, V. Nath, D. Xu, Q. Dou, Z. Xu. "Fair Federated
   Medical Image Segmentation via Client Contribution Estimation." CVPR 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.valuation.base import (
    Scores,
    Valuation,
    bootstrap_indices,
    sampled_scores,
    validate_common,
)
from fedguard.valuation.cosine import require_updates
from fedguard.valuation.game import Game, RoundGame
from fedguard.valuation.reconstruction import RoundUpdates


def minus_cosines(updates: RoundUpdates, n_players: int) -> Tensor:
    """``(n,)`` ``cos(Δ_i, g − w_i Δ_i)`` with ``g = Σ_j w_j Δ_j`` (the others' consensus); NaN for
    absent clients, 0 when either vector is zero."""
    deltas = updates.deltas.to(torch.float64)  # (m, d)
    w = updates.weights()  # (m,)
    minus = (w @ deltas).unsqueeze(0) - w.unsqueeze(1) * deltas  # (m, d)
    norms = deltas.norm(dim=1) * minus.norm(dim=1)
    cos = torch.where(norms > 0, (deltas * minus).sum(1) / norms.clamp(min=1e-300), 0.0)
    out = torch.full((n_players,), float("nan"), dtype=torch.float64)
    out[updates.client_ids] = cos
    return out


def _normalize(x: Tensor, floor: float, present: Tensor) -> Tensor:
    """``x / Σx`` over the last axis, clipped below at ``floor`` (as the reference code); absent
    clients stay 0."""
    x = torch.where(present, x, 0.0)
    return torch.where(
        present, (x / x.sum(dim=-1, keepdim=True).clamp(min=1e-300)).clamp(min=floor), 0.0
    )


def fedce_weights(
    cosines: Tensor, errors: Tensor, space: str, combine: str, floor: float
) -> Tensor:
    """``(..., R, n)`` per-round cosines and minus-model errors (NaN where absent) → ``(..., n)``.

    Gradient space ``1 − mean_r cos``; data space ``mean_r error``; each normalized to sum 1 and
    clipped at ``floor``; combined by product (``times``) or sum (``plus``) and renormalized.
    Clients that never took part get 0.
    """
    present = (~torch.isnan(cosines)).any(dim=-2)  # (..., n)
    grad = torch.where(present, 1.0 - torch.nanmean(cosines, dim=-2).nan_to_num(), 0.0)
    data = torch.where(present, torch.nanmean(errors, dim=-2).nan_to_num(), 0.0)
    grad_w, data_w = _normalize(grad, floor, present), _normalize(data, floor, present)
    if space == "gradient":
        combined = grad_w
    elif space == "data":
        combined = data_w
    else:
        combined = grad_w * data_w if combine == "times" else grad_w + data_w
    return _normalize(combined, floor, present)


@dataclass(frozen=True)
class FedCE(Valuation):
    """FedCE contribution coefficients, computed post hoc from saved updates.

    Gradient space: per round ``cos(Δ_i, g − w_i Δ_i)`` between a client's update and the others'
    weighted consensus (``w`` = the run's FedAvg weights; FedCE itself reweights with its previous
    coefficients, which a post-hoc audit does not have); ``1 − mean`` over rounds, normalized. Data
    space: error ``utility_ceiling − v_r(P_r ∖ {i})`` of the "minus model" (round ``r``'s model
    rebuilt without client ``i``), averaged over rounds and normalized; the paper scores the minus
    model on the client's own data, which a server auditing afterwards does not hold, so we use the
    validation data of the utility. ``utility_ceiling`` is 1 for accuracy, 0 for negative loss.
    Combined by product (``times``, the default) or sum (``plus``) with the reference code's
    ``1e-3`` floor (``min_weight``). A proxy: values sum to 1. Bootstrap over rounds.
    """

    space: str = "both"
    combine: str = "times"
    utility_ceiling: float = 1.0
    min_weight: float = 1e-3
    n_bootstrap: int = 200
    confidence: float = 0.95

    target = "proxy"

    def __post_init__(self) -> None:
        validate_common(None, self.n_bootstrap, self.confidence)
        require(self.space in ("gradient", "data", "both"), "space", "'gradient', 'data' or 'both'")
        require(self.combine in ("times", "plus"), "combine", "'times' or 'plus'")
        require(0.0 <= self.min_weight < 1.0, "min_weight", "in [0, 1)")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        rg = require_updates(game, "fedce")
        n, rounds = rg.n_players, rg.n_rounds
        cos = torch.stack([minus_cosines(rg.round_updates(r), n) for r in range(rounds)])  # (R, n)
        errors = torch.full((rounds, n), float("nan"), dtype=torch.float64)
        queries = 0
        if self.space != "gradient":
            for r in range(rounds):
                ids = torch.tensor(rg.participants(r), dtype=torch.int64)
                full = int((torch.ones_like(ids) << ids).sum())
                minus_masks = full ^ (torch.ones_like(ids) << ids)  # (m,)
                errors[r, ids] = self.utility_ceiling - rg.round_utilities(r, minus_masks)
                queries += int(ids.shape[0])
        estimate = fedce_weights(cos, errors, self.space, self.combine, self.min_weight)
        idx = bootstrap_indices(rounds, self.n_bootstrap, generator)  # (B, R)
        replicates = fedce_weights(cos[idx], errors[idx], self.space, self.combine, self.min_weight)
        return sampled_scores(
            "fedce",
            estimate,
            replicates,
            n_units=rounds,
            n_evaluations=queries,
            n_queries=queries,
            target="proxy",
            confidence=self.confidence,
            evaluation_unit="round-coalition",
        )
