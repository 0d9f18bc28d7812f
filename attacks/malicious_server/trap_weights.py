"""When the Curious Abandon Honesty: trap weights in the first layer (see
:mod:`attacks.malicious_server.trap` for the maths)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from attacks.malicious_server.base import IMPRINT_KEY, MaliciousServerAttack, attack_generator
from attacks.malicious_server.layers import FirstLayer
from attacks.malicious_server.trap import trap_imprint, trap_recovery
from fedguard.api import BroadcastContext, require
from fedguard.types import BroadcastPlan


@dataclass(frozen=True)
class TrapWeights(MaliciousServerAttack):
    """A malicious server's trap weights: each first-layer unit fires for few samples, and a
    unit fired by one sample gives it back exactly; the recovery rate falls with the batch.

    Parameters
    ----------
    positive_scale
        Factor on each row's positive half (< 1 makes units fire more rarely on non-negative
        inputs).
    at_round, relative_tol
        See :class:`~attacks.malicious_server.base.MaliciousServerAttack`.

    References
    ----------
    .. [1] F. Boenisch, A. Dziedzic, R. Schuster, A. S. Shamsabadi, I. Shumailov, N. Papernot,
       "When the Curious Abandon Honesty: Federated Learning Is Not Private", IEEE EuroS&P 2023.
    """

    attack_name: ClassVar[str] = "trap_weights"
    positive_scale: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.positive_scale <= 1.0, "positive_scale", "in (0, 1]")

    def plan(
        self, global_params: Tensor, layer: FirstLayer, ctx: BroadcastContext
    ) -> BroadcastPlan:
        gen = attack_generator(ctx, self.attack_name)
        model = trap_imprint(global_params, layer, self.positive_scale, gen)
        return BroadcastPlan(model, info={IMPRINT_KEY: True})

    def recover(
        self, update: Tensor, layer: FirstLayer, plan: BroadcastPlan, n_samples: int, task: Any
    ) -> Tensor:
        return trap_recovery(
            layer.weight_of(update),
            layer.bias_of(update),
            n_samples,
            task.data_range,
            self.relative_tol,
        )
