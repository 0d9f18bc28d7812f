"""FoolsGold."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import row_norms

HISTORY_KEY = "history"


def foolsgold_weights(histories: Tensor, confidence: float) -> tuple[Tensor, Tensor]:
    """FoolsGold's learning-rate vector from the ``(n, d)`` aggregated update histories.

    Follows the authors' reference code: cosine similarities with the diagonal set to 0, the
    pardoning step ``cs_ij ← cs_ij · v_i / v_j`` when ``v_i < v_j`` (v = row maxima before
    pardoning), ``α = clip(1 − max_j cs_ij, 0, 1)``, ``α ← α / max α`` with 1 → 0.99, then the
    logit ``α ← clip(κ(ln(α/(1 − α)) + 0.5), 0, 1)``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``(n,)`` weights α in [0, 1] and ``(n,)`` maximal similarities v (before pardoning).
    """
    n = histories.shape[0]
    h = histories.to(torch.float64)
    if n == 1:
        return torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    unit = h / row_norms(h).clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    cs = unit @ unit.T  # (n, n)
    cs.fill_diagonal_(0.0)
    v = cs.max(dim=1).values  # (n,)
    pardon = v[:, None] < v[None, :]  # (n, n): row i has the smaller maximum
    ratio = v[:, None] / torch.where(v[None, :] != 0, v[None, :], torch.ones_like(v[None, :]))
    cs = torch.where(pardon, cs * ratio, cs)
    alpha = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    top = alpha.max()
    if not bool(top > 0):
        return torch.zeros(n, dtype=torch.float64), v
    alpha = alpha / top
    alpha = torch.where(alpha == 1.0, torch.full_like(alpha, 0.99), alpha)
    with torch.no_grad():
        logit = confidence * (torch.log(alpha / (1.0 - alpha)) + 0.5)
    logit = torch.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0)
    return logit.clamp(0.0, 1.0), v


@dataclass(frozen=True)
class FoolsGold(RobustAggregator):
    """FoolsGold: down-weight clients whose update *histories* are too similar (sybils).

    Each client's history is the sum of all updates it has sent (kept in
    ``AggregationResult.state["history"]``, keyed by client id). Client ids come from
    ``ctx.client_ids`` when the context carries them, else the row index is used as the id (right
    only when every client takes part in every round, in the same order). Weights α follow the
    authors' reference code (see :func:`foolsgold_weights`); the paper's optional feature-importance
    re-weighting is not applied. Convention: the aggregate is the α-weighted *mean*
    ``Σ α_i x_i / Σ α_i`` (the reference code applies the unnormalized sum), zero when all α are 0 —
    so identical updates (perfect sybils) aggregate to zero. ``weights`` are α normalized,
    ``scores`` the maximal history cosine similarity v_i, rows with α = 0 are ``flagged``.

    Parameters
    ----------
    confidence : float
        κ, the slope of the logit.

    References
    ----------
    Fung, Yoon, Beschastnikh. "The Limitations of Federated Learning in Sybil Settings."
    RAID 2020.
    """

    confidence: float = 1.0

    def __post_init__(self) -> None:
        require(self.confidence > 0, "confidence", "a positive number")

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        ids_attr = getattr(ctx, "client_ids", None)
        ids = list(ids_attr) if ids_attr is not None and len(ids_attr) == n else list(range(n))
        past: dict[int, Tensor] = dict(ctx.state.get(HISTORY_KEY, {}))
        rows = []
        for i, cid in enumerate(ids):
            previous = past.get(cid)
            rows.append(updates[i] if previous is None else previous.to(updates.dtype) + updates[i])
        histories = torch.stack(rows)  # (n, d)
        past.update({cid: histories[i].detach().clone() for i, cid in enumerate(ids)})
        alpha, similarity = foolsgold_weights(histories, self.confidence)
        total = alpha.sum()
        if bool(total > 0):
            eff = alpha / total
            aggregate = eff.to(updates.dtype) @ updates
        else:
            eff = alpha
            aggregate = torch.zeros(d, dtype=updates.dtype)
        return RuleOutput(
            aggregate=aggregate,
            weights=eff,
            scores=similarity,
            flagged=tuple(int(i) for i in (alpha <= 0).nonzero().flatten()),
            state={HISTORY_KEY: past},
        )
