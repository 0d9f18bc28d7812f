"""A client's check of how far the received model moved since the last model it received.

Honest federated training moves the global model by the server's step each round, a small
fraction of its norm; a malicious broadcast that replaces a layer (an imprint, a dead layer)
jumps by the order of that layer's norm. Each client keeps the last model it received (per-client
state: a client sampled rarely compares with an older model, and the bound is on the relative
jump ``‖θ_received − θ_previous‖ / ‖θ_previous‖`` per weight layer, so one replaced layer is
not diluted by the others). A client without history (its first round) does not alarm, and a
model it refused does not become its reference.

References
----------
.. [1] D. Pasquini, D. Francati, G. Ateniese, "Eluding Secure Aggregation in Federated Learning
   via Model Inconsistency", ACM CCS 2022 (Sec. 6: clients checking the model they receive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from defenses.client_checks.layers import weight_layers
from fedguard.api import ClientCheck, ClientCheckOutput, TransformContext, require

STATE_KEY = "previous_models"  # {client id: (d,) the last model that client received}


def relative_layer_jump(received: Tensor, previous: Tensor, layout: Any) -> Tensor:
    """``(d,)`` × ``(d,)`` → the largest relative change of one weight layer (with its bias)."""
    worst = torch.zeros((), dtype=torch.float64)
    for layer in weight_layers(layout):
        parts = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        new = torch.cat([received[p] for p in parts]).double()
        old = torch.cat([previous[p] for p in parts]).double()
        jump = (new - old).norm() / old.norm().clamp_min(1e-12)
        worst = torch.maximum(worst, jump)
    return worst


@dataclass(frozen=True)
class ModelJump(ClientCheck):
    """Refuse a received model whose weight layers moved more than ``max_relative_jump`` since
    the last model this client received.

    Parameters
    ----------
    max_relative_jump
        Largest ``‖θ_t − θ_prev‖ / ‖θ_prev‖`` of one layer accepted.
    """

    max_relative_jump: float = 0.5

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.max_relative_jump) and self.max_relative_jump > 0,
            "max_relative_jump",
            "a finite number > 0",
        )

    def check(self, received: Tensor, layout: Any, ctx: TransformContext) -> ClientCheckOutput:
        previous: dict[int, Tensor] = dict(ctx.state.get(STATE_KEY, {}))
        scores = torch.zeros(received.shape[0], dtype=torch.float64)
        for row, cid in enumerate(ctx.client_ids):
            if cid in previous:
                jump = relative_layer_jump(received[row], previous[cid], layout)
                scores[row] = jump / self.max_relative_jump
            if scores[row] <= 1.0:  # a refused model never becomes the reference
                previous[cid] = received[row].detach().clone()
        return ClientCheckOutput(alarms=scores > 1.0, scores=scores, state={STATE_KEY: previous})


__all__ = ["ModelJump", "relative_layer_jump"]
