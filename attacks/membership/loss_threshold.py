"""Loss-threshold membership inference (Yeom et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from attacks.membership._common import (
    MembershipOutput,
    as_membership_task,
    check_target,
    resolve_target,
    score_membership,
    true_class_logprob,
)
from attacks.membership._shadow import stacked_logits
from fedguard.api import PrivacyAttack
from fedguard.types import ServerView, Truth


def loss_scores(logits: Tensor, labels: Tensor) -> Tensor:
    """Membership score = −(cross-entropy loss) = ``log p_y`` in float64. ``(N, C) → (N,)``."""
    return true_class_logprob(logits, labels)


@dataclass(frozen=True)
class LossThreshold(PrivacyAttack):
    """Flag a point as a member when the target's loss on it is low.

    The attack outputs the score ``−loss`` for every candidate; Yeom et al.'s single threshold
    (the mean training loss) is one point of the ROC the metrics sweep.

    Parameters
    ----------
    target
        ``"global"`` (the final global model) or ``"client"`` (``θ_global + Δ`` of
        ``target_client``; members = that client's data).
    target_client
        Client id for ``target="client"``.

    References
    ----------
    Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the Connection
    to Overfitting." IEEE CSF 2018.
    """

    target: str = "global"
    target_client: int | None = None

    def __post_init__(self) -> None:
        check_target(self.target, self.target_client)

    def observe(self, view: ServerView, env: Any) -> MembershipOutput:
        task = as_membership_task(env)
        tgt = resolve_target(view, task, self.target, self.target_client)
        x, y = task.candidates
        logits = stacked_logits(task.model, tgt.params[None], x)[0]  # (N, C)
        return MembershipOutput(
            attack="loss_threshold",
            scores=loss_scores(logits, y),
            candidates=task.candidates,
            client_id=tgt.client_id,
            from_aggregate=tgt.from_aggregate,
        )

    def metrics(self, output: MembershipOutput, truth: Truth) -> dict[str, float]:
        return score_membership(output, truth)


__all__ = ["LossThreshold", "loss_scores"]
