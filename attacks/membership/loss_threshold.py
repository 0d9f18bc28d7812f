"""Loss-threshold membership inference (Yeom et al. 2018)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from fedguard.types import ServerView

from ._common import (
    MembershipAttack,
    MembershipTask,
    ResolvedTarget,
    check_target,
    true_class_logprob,
)
from ._shadow import stacked_logits


def loss_scores(logits: Tensor, labels: Tensor) -> Tensor:
    """Membership score = −(cross-entropy loss) = ``log p_y`` in float64. ``(N, C) → (N,)``."""
    return true_class_logprob(logits, labels)


@dataclass(frozen=True)
class LossThreshold(MembershipAttack):
    """Flag a point as a member when the target's loss on it is low.

    The attack outputs the score ``−loss`` for every candidate; Yeom et al.'s single threshold
    (the mean training loss) is one point of the ROC the metrics sweep.

    Parameters
    ----------
    target
        ``"global"`` (the final global model) or ``"client"`` (``θ_global + Δ`` of
        ``target_client``; members = that client's data).
    target_client
        Client id for ``target="client"`` (``None``: the view's first client).
    at_round
        Round whose view is attacked; ``None``: the last round of the run.
    n_candidates
        Points scored when candidates come from a simulation (half members, half test points).
    seed
        Seed of the stream that samples candidates from a simulation.

    References
    ----------
    Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the Connection
    to Overfitting." IEEE CSF 2018.
    """

    attack_name: ClassVar[str] = "loss_threshold"
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    n_candidates: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        check_target(self.target, self.target_client, self.at_round, self.n_candidates)

    def score_candidates(
        self, view: ServerView, task: MembershipTask, tgt: ResolvedTarget
    ) -> tuple[Tensor, Mapping[str, float]]:
        x, y = task.candidates
        logits = stacked_logits(task.model, tgt.params[None], x)[0]  # (N, C)
        return loss_scores(logits, y), {}


__all__ = ["LossThreshold", "loss_scores"]
