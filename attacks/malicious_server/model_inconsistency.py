"""Model inconsistency: a different model for one target client, so that the sum is its update.

The target receives an imprint model (Robbing the Fed's bins or trap weights); every other
sampled client receives a model whose first layer never fires (zero weights, bias −1): their
ReLU units are dead, so their updates of the first layer — and of the next layer's weights,
which read the dead units — are exactly zero, and in a secure-aggregation sum those coordinates
are the target's update alone. The attack then inverts it as if the target were the only
client. Secure aggregation does not stop this (it only hides individual updates); a client-side
commitment to the broadcast model bound into the protocol does (``model_commitment``).

References
----------
.. [1] D. Pasquini, D. Francati, G. Ateniese, "Eluding Secure Aggregation in Federated Learning
   via Model Inconsistency", ACM CCS 2022.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.malicious_server.base import IMPRINT_KEY, MaliciousServerAttack
from attacks.malicious_server.bins import birthday_expectation
from attacks.malicious_server.layers import FirstLayer
from attacks.malicious_server.robbing_the_fed import RobbingTheFed, imprint_rows
from attacks.malicious_server.trap_weights import TrapWeights
from fedguard.api import BroadcastContext, require, require_positive
from fedguard.errors import ConfigError
from fedguard.types import BroadcastPlan, ServerView


@torch.no_grad()
def dead_first_layer(params: Tensor, layer: FirstLayer) -> Tensor:
    """``(d,)`` parameters whose first layer never fires (``W = 0``, ``b = −1``)."""
    out = params.detach().clone()
    out[layer.weight] = 0.0
    out[layer.bias] = -1.0
    return out


@dataclass(frozen=True)
class ModelInconsistency(MaliciousServerAttack):
    """Send the target an imprint model and everyone else a model with a dead first layer.

    Parameters
    ----------
    target_client
        The client attacked (``None``: the first client sampled in the round).
    imprint
        ``"bins"`` (Robbing the Fed) or ``"trap"`` (trap weights) for the target's model.
    bins, output_gain
        Of the ``"bins"`` imprint (see :class:`RobbingTheFed`).
    positive_scale
        Of the ``"trap"`` imprint (see :class:`TrapWeights`).
    at_round, relative_tol
        See :class:`~attacks.malicious_server.base.MaliciousServerAttack`.

    References
    ----------
    .. [1] D. Pasquini, D. Francati, G. Ateniese, "Eluding Secure Aggregation in Federated
       Learning via Model Inconsistency", ACM CCS 2022.
    """

    attack_name: ClassVar[str] = "model_inconsistency"
    target_client: int | None = None
    imprint: str = "bins"
    bins: int | None = None
    output_gain: float = 4.0
    positive_scale: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.imprint in ("bins", "trap"), "imprint", "'bins' or 'trap'")
        require(
            self.target_client is None
            or (isinstance(self.target_client, int) and self.target_client >= 0),
            "target_client",
            "a client id ≥ 0, or None (the first sampled client)",
        )
        require_positive(self, "output_gain")
        self.inner()  # validates bins and positive_scale

    def inner(self) -> MaliciousServerAttack:
        """The single-client attack run against the target."""
        if self.imprint == "bins":
            return RobbingTheFed(
                at_round=self.at_round,
                relative_tol=self.relative_tol,
                bins=self.bins,
                output_gain=self.output_gain,
            )
        return TrapWeights(
            at_round=self.at_round,
            relative_tol=self.relative_tol,
            positive_scale=self.positive_scale,
        )

    def target(self, sampled: tuple[int, ...]) -> int:
        if self.target_client is None:
            return int(sampled[0])
        if self.target_client not in sampled:
            raise ConfigError(
                f"target_client {self.target_client} is not sampled in this round "
                f"(clients {list(sampled)}); sample every client or choose another target."
            )
        return self.target_client

    def plan(
        self, global_params: Tensor, layer: FirstLayer, ctx: BroadcastContext
    ) -> BroadcastPlan:
        target = self.target(tuple(ctx.round.sampled_ids))
        attack = self.inner().plan(global_params, layer, ctx)
        info = {**attack.info, IMPRINT_KEY: True, "target_client": target}
        return BroadcastPlan(dead_first_layer(global_params, layer), {target: attack.model}, info)

    def groups(self, view: ServerView, plan: BroadcastPlan) -> list[tuple[tuple[int, ...], Tensor]]:
        target = int(plan.info["target_client"])
        if target not in view.client_ids:  # dropped out or refused the round
            return []
        if view.updates is not None:
            return [((target,), view.updates[view.client_ids.index(target)])]
        return [((target,), view.update_sum)]

    def recover(
        self, update: Tensor, layer: FirstLayer, plan: BroadcastPlan, n_samples: int, task: Any
    ) -> Tensor:
        return self.inner().recover(update, layer, plan, n_samples, task)

    def expected(self, view: ServerView, plan: BroadcastPlan) -> float | None:
        if self.imprint != "bins":
            return None
        counts = dict(zip(view.client_ids, view.num_samples, strict=True))
        return sum(
            birthday_expectation(counts[clients[0]], imprint_rows(plan))
            for clients, _ in self.groups(view, plan)
        )
