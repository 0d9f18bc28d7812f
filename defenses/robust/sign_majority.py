"""Sign majority vote (signSGD with majority vote)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.types import AggregationContext

from .base import RobustAggregator, RuleOutput


@dataclass(frozen=True)
class SignMajority(RobustAggregator):
    """Coordinate-wise majority vote of the update signs, times a step size.

    ``aggregate = s · sign(Σ_i sign(x_i))`` (one client, one vote; a tied coordinate gives 0).
    The same rule is the plurality vote of FedVote on 1-bit quantized updates. The step ``s`` is
    ``step_size`` when set; otherwise the median over clients of their mean absolute coordinate,
    so the aggregate has the per-coordinate magnitude of a typical update (a documented choice: the
    papers use a fixed server learning rate). ``scores`` are each client's share of coordinates that
    disagree with the vote; ``weights`` uniform; nobody is flagged.

    Parameters
    ----------
    step_size : float | None
        Fixed per-coordinate step s > 0, or ``None`` for the median mean-|x| rule above.

    References
    ----------
    Bernstein, Zhao, Azizzadenesheli, Anandkumar. "signSGD with Majority Vote is Communication
    Efficient and Fault Tolerant." ICLR 2019.
    Yue, Nie, Pan, Huang. "FedVote: Resource-Efficient Federated Learning via Vote." (2021).
    """

    step_size: float | None = None

    def __post_init__(self) -> None:
        require(
            self.step_size is None or self.step_size > 0,
            "step_size",
            "a positive number, or null for the median mean absolute coordinate",
        )

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        signs = torch.sign(updates)  # (n, d)
        vote = torch.sign(signs.sum(dim=0))  # (d,)
        if self.step_size is None:
            step = torch.quantile(updates.abs().mean(dim=1).double(), 0.5)
        else:
            step = torch.tensor(self.step_size, dtype=torch.float64)
        disagree = (signs != vote[None, :]).double().mean(dim=1)  # (n,)
        return RuleOutput(
            aggregate=vote * step.to(updates.dtype),
            weights=torch.full((n,), 1.0 / n, dtype=torch.float64),
            scores=disagree,
        )
