"""Robbing the Fed: the first layer imprints bins of a feature's distribution (see
:mod:`attacks.malicious_server.bins` for the maths)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from attacks.malicious_server.base import (
    IMPRINT_KEY,
    MaliciousServerAttack,
    attack_generator,
    public_features,
)
from attacks.malicious_server.bins import (
    bin_imprint,
    bin_recovery,
    bin_thresholds,
    birthday_expectation,
    random_direction,
)
from attacks.malicious_server.layers import FirstLayer
from fedguard.api import BroadcastContext, require, require_positive
from fedguard.types import BroadcastPlan, ServerView


def imprint_rows(plan: BroadcastPlan) -> int:
    return int(plan.info.get("imprint_rows", 0))


@dataclass(frozen=True)
class RobbingTheFed(MaliciousServerAttack):
    """A malicious server's bin imprint in the first fully connected layer; every sample alone
    in its bin is recovered exactly, also from a secure-aggregation sum (the bins are shared by
    all clients of the round).

    Parameters
    ----------
    bins
        Rows of the first layer used as bins (``None``: all of them); each costs one row.
    output_gain
        Magnitude of the next layer's weights on the bin rows: larger gives larger bin
        gradients (farther above the fixed-point rounding of secure aggregation) — keep
        ``learning_rate·output_gain`` inside the transport's ``clip_range``.
    at_round, relative_tol
        See :class:`~attacks.malicious_server.base.MaliciousServerAttack`.

    References
    ----------
    .. [1] L. Fowl, J. Geiping, W. Czaja, M. Goldblum, T. Goldstein, "Robbing the Fed: Directly
       Obtaining Private Data in Federated Learning with Modified Models", ICLR 2022.
    """

    attack_name: ClassVar[str] = "robbing_the_fed"
    bins: int | None = None
    output_gain: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.bins is None or (isinstance(self.bins, int) and self.bins >= 2),
            "bins",
            "None (every row of the first layer) or an integer ≥ 2",
        )
        require_positive(self, "output_gain")

    def plan(
        self, global_params: Tensor, layer: FirstLayer, ctx: BroadcastContext
    ) -> BroadcastPlan:
        k = layer.rows if self.bins is None else min(self.bins, layer.rows)
        direction = random_direction(layer.inputs, attack_generator(ctx, self.attack_name))
        thresholds = bin_thresholds(public_features(ctx), direction, k)
        model = bin_imprint(global_params, layer, direction, thresholds, self.output_gain)
        return BroadcastPlan(model, info={IMPRINT_KEY: True, "imprint_rows": k})

    def recover(
        self, update: Tensor, layer: FirstLayer, plan: BroadcastPlan, n_samples: int, task: Any
    ) -> Tensor:
        k = imprint_rows(plan)
        inputs, _ = bin_recovery(
            layer.weight_of(update)[:k], layer.bias_of(update)[:k], self.relative_tol
        )
        return inputs

    def expected(self, view: ServerView, plan: BroadcastPlan) -> float | None:
        counts = dict(zip(view.client_ids, view.num_samples, strict=True))
        return sum(
            birthday_expectation(sum(counts[c] for c in clients), imprint_rows(plan))
            for clients, _ in self.groups(view, plan)
        )
