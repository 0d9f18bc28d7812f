"""FLTrust."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput
from .kernels import row_norms


@dataclass(frozen=True)
class FLTrust(RobustAggregator):
    """FLTrust: trust scores from cosine similarity with the server's root-dataset update.

    With g₀ = ``ctx.reference_update``: ``TS_i = ReLU(cos(x_i, g₀))``, each update rescaled to
    ‖g₀‖, aggregate ``Σ TS_i · x_i‖g₀‖/‖x_i‖ ÷ Σ TS_i`` (zero when every TS_i is 0). Client weights
    are ignored (as in the paper). ``weights`` are the normalized trust scores, ``scores`` are
    ``1 − cos(x_i, g₀)`` (higher = more suspicious), rows with trust 0 are ``flagged``.

    References
    ----------
    Cao, Fang, Liu, Gong. "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping."
    NDSS 2021.
    """

    needs_reference_update: ClassVar[bool] = True

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n, d = updates.shape
        g0 = ctx.reference_update
        if g0 is None:
            raise ConfigError(
                "aggregator 'fltrust' needs the server's root-dataset update (reference_update); "
                "configure a root dataset for the server."
            )
        if g0.numel() != d:
            raise ConfigError(
                f"reference_update must have d = {d} entries like the client updates; "
                f"got {g0.numel()}."
            )
        ref = g0.reshape(-1).to(torch.float64)  # (d,)
        x = updates.to(torch.float64)  # (n, d)
        ref_norm = torch.linalg.vector_norm(ref)
        norms = row_norms(x)  # (n,)
        tiny = torch.finfo(torch.float64).tiny
        cos = (x @ ref) / (norms * ref_norm).clamp_min(tiny)  # (n,)
        trust = cos.clamp_min(0.0)
        total = trust.sum()
        if not bool(total > 0):
            aggregate = torch.zeros(d, dtype=torch.float64)
            eff = torch.zeros(n, dtype=torch.float64)
        else:
            eff = trust / total
            aggregate = (eff * ref_norm / norms.clamp_min(tiny)) @ x
        return RuleOutput(
            aggregate=aggregate,
            weights=eff,
            scores=1.0 - cos,
            flagged=tuple(int(i) for i in (trust <= 0).nonzero().flatten()),
        )
