"""Canary client as a free-rider plugin: its update is a fixed random unit direction.

Client ``i`` configured as a canary is *inserted* with probability ½ (its own seeded coin,
:func:`fedguard.core.canaries.canary_included`); an inserted canary sends
``clip_norm · c_i`` every round it is sampled, with ``c_i`` its direction
(:func:`~fedguard.core.canaries.canary_direction`, keyed by the canary seed and the
client id); a canary that was not inserted sends the zero update. The auditor recomputes both from
``(canary_seed, client id)`` — :func:`inclusion_truth` — so the truth never passes through the
server, an aggregator or an observer.

Conventions
-----------
* A zero update stands for "absent". Under DP-FedAvg's fixed-denominator sum (McMahan et al. 2018)
  the release is then identical to the canary's absence; under a weighted mean whose denominator
  counts participants it is not, and the one-run bound audits the replace-by-zero relation.
* Free-riders skip the client transforms, so this plugin audits *central* mechanisms (noise
  added to the aggregate). For client-side noise use
  :func:`fedguard.audit.empirical.empirical_audit`, whose canary clients go through every
  client transform.

References
----------
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import FreeRider, FreeRiderContext, require
from fedguard.core.canaries import canary_direction, canary_included
from fedguard.errors import IncompatibleError


def canary_update(
    client_id: int,
    dimension: int,
    *,
    clip_norm: float,
    canary_seed: int,
    inclusion_probability: float = 0.5,
) -> Tensor:
    """``(dimension,)`` float32: ``clip_norm · c_i`` if canary ``client_id`` is inserted, else 0.

    References
    ----------
    Andrew et al. (2024); Steinke, Nasr and Jagielski (2023).
    """
    if not canary_included(client_id, canary_seed, inclusion_probability):
        return torch.zeros(dimension)
    return clip_norm * canary_direction(client_id, dimension, canary_seed)


def inclusion_truth(
    client_ids: Sequence[int], canary_seed: int, inclusion_probability: float = 0.5
) -> dict[str, Any]:
    """The audit's secret for canary clients ``client_ids``: which of them were inserted."""
    return {
        "canary_seed": canary_seed,
        "client_ids": [int(i) for i in client_ids],
        "included": [
            canary_included(int(i), canary_seed, inclusion_probability) for i in client_ids
        ],
    }


@dataclass(frozen=True)
class Canary(FreeRider):
    """A canary client: sends its fixed random unit direction scaled to ``clip_norm``.

    Parameters
    ----------
    clip_norm
        L2 norm of the canary update; set it to the mechanism's clipping norm.
    canary_seed
        Seed of the directions and inclusion coins (the auditor needs it).
    inclusion_probability
        Probability that a canary is inserted (½ for the one-run audit).

    References
    ----------
    Andrew et al. (2024); Steinke, Nasr and Jagielski (2023).
    """

    clip_norm: float = 1.0
    canary_seed: int = 0
    inclusion_probability: float = 0.5

    def __post_init__(self) -> None:
        require(
            self.clip_norm > 0 and math.isfinite(self.clip_norm),
            "clip_norm",
            "a finite number > 0",
        )
        require(0.0 < self.inclusion_probability < 1.0, "inclusion_probability", "in (0, 1)")

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        client_id = ctx.client_id
        if client_id < 0:
            raise IncompatibleError(
                "the canary free-rider needs the client id in FreeRiderContext.client_id "
                "(the round loop sets it for every free-rider it calls)."
            )
        update = canary_update(
            client_id,
            ctx.global_params.numel(),
            clip_norm=self.clip_norm,
            canary_seed=self.canary_seed,
            inclusion_probability=self.inclusion_probability,
        )
        return update.to(dtype=ctx.global_params.dtype, device=ctx.global_params.device)
