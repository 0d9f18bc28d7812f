"""Robust membership inference, RMIA (Zarifzadeh et al. 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.metrics.privacy_attack_metrics import auc
from fedguard.types import ServerView

from ._common import (
    MembershipAttack,
    MembershipTask,
    ResolvedTarget,
    attack_generator,
    check_target,
    reference_models,
    true_class_logprob,
)


def marginal_probability(
    reference_probs: Tensor, reference_in: Tensor, *, offline: bool, offline_a: float
) -> Tensor:
    """``Pr(x)`` from reference models. ``(K, N) × (K, N) → (N,)``.

    Online: the mean of ``p(y|x)`` over all references. Offline (only OUT references used):
    ``Pr(x) = ½((1 + a)·P_out(x) + (1 − a))``, the paper's linear correction for the missing IN
    models. A point without OUT references falls back to the mean over all OUT values.
    """
    p = reference_probs.double()
    if not offline:
        return p.mean(dim=0)
    out = ~reference_in
    w = out.double()
    count = w.sum(dim=0)
    p_out = (w * p).sum(dim=0) / count.clamp_min(1)
    p_out = torch.where(count > 0, p_out, p[out].mean())
    return 0.5 * ((1.0 + offline_a) * p_out + (1.0 - offline_a))


def rmia_scores(
    target_prob_x: Tensor,
    marginal_x: Tensor,
    target_prob_z: Tensor,
    marginal_z: Tensor,
    gamma: float,
) -> Tensor:
    """``score(x) = Pr_z[ LR(x, z) ≥ γ ]`` with ``LR(x, z) = (p(x|θ)/Pr(x)) / (p(z|θ)/Pr(z))``.

    ``(N,), (N,), (Z,), (Z,) → (N,)``; computed by sorting the ``Z`` population ratios, so the cost
    is ``O((N + Z) log Z)`` rather than ``N·Z``.
    """
    ratio_x = target_prob_x.double() / marginal_x.double()  # (N,)
    ratio_z, _ = torch.sort(target_prob_z.double() / marginal_z.double())  # (Z,)
    # LR ≥ γ  ⇔  ratio_z ≤ ratio_x / γ
    count = torch.searchsorted(ratio_z, ratio_x / gamma, right=True)
    return count.double() / ratio_z.numel()


def fit_offline_a(
    reference_probs: Tensor,
    reference_in: Tensor,
    population_start: int,
    gamma: float,
    grid: Tensor,
    n_pseudo_targets: int,
) -> float:
    """Choose ``a`` by attacking reference models with the others (paper, Sec. 4 / App.).

    Each of the first ``n_pseudo_targets`` references plays the target; the remaining ones are the
    offline references; candidates are all pool points (membership known), ``z`` the population
    part of the pool. The ``a`` with the highest mean AUC wins (first on ties).
    ``reference_probs, reference_in (K, pool)``.
    """
    k = reference_probs.shape[0]
    aucs = torch.zeros(grid.numel(), dtype=torch.float64)
    for t in range(min(n_pseudo_targets, k)):
        others = torch.arange(k) != t
        for j, a in enumerate(grid.tolist()):
            pr = marginal_probability(
                reference_probs[others], reference_in[others], offline=True, offline_a=a
            )
            s = rmia_scores(
                reference_probs[t],
                pr,
                reference_probs[t, population_start:],
                pr[population_start:],
                gamma,
            )
            aucs[j] += auc(s, reference_in[t])
    return float(grid[int(torch.argmax(aucs))])


@dataclass(frozen=True)
class RMIA(MembershipAttack):
    """Pairwise likelihood-ratio membership inference against population samples.

    ``p(x|θ)`` is the probability the model gives the true label (float64 softmax). Reference
    models train on random subsets of ``candidates ∪ population``; the population points serve
    as the ``z`` samples.

    Parameters
    ----------
    n_references
        Number of reference models.
    offline
        Use only OUT references with the linear correction ``a`` (the paper's offline RMIA).
    offline_a
        The offline ``a`` in [0, 1]; ``None`` fits it on the reference models.
    gamma
        Threshold γ ≥ 1 on the pairwise likelihood ratio (the paper's default is 1 for offline).
    n_pseudo_targets
        References used as pseudo-targets when fitting ``a``.
    target, target_client, at_round, n_candidates, shadow_steps, seed
        As in :class:`~attacks.membership._common.MembershipAttack`.

    References
    ----------
    Zarifzadeh, Liu, Shokri. "Low-Cost High-Power Membership Inference Attacks." ICML 2024.
    """

    attack_name: ClassVar[str] = "rmia"
    n_references: int = 8
    offline: bool = True
    offline_a: float | None = None
    gamma: float = 1.0
    n_pseudo_targets: int = 2
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    n_candidates: int = 200
    shadow_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_references >= 2, "n_references", "an integer ≥ 2")
        require(
            self.offline_a is None or 0.0 <= self.offline_a <= 1.0, "offline_a", "in [0, 1] or None"
        )
        require(self.gamma >= 1.0, "gamma", "a number ≥ 1")
        require(self.n_pseudo_targets >= 1, "n_pseudo_targets", "a positive integer")
        check_target(self.target, self.target_client, self.at_round, self.n_candidates)

    def score_candidates(
        self, view: ServerView, task: MembershipTask, tgt: ResolvedTarget
    ) -> tuple[Tensor, Mapping[str, float]]:
        gen = attack_generator(self.seed, view.round, tgt.client_id, self.attack_name)
        refs = reference_models(task, tgt, self.n_references, gen)
        n = refs.n_candidates
        p_target = true_class_logprob(refs.target_logits, refs.pool_labels).exp()  # (N + P,)
        p_refs = true_class_logprob(refs.reference_logits, refs.pool_labels).exp()  # (K, N + P)
        a = 1.0
        if self.offline:
            a = (
                self.offline_a
                if self.offline_a is not None
                else fit_offline_a(
                    p_refs,
                    refs.reference_in,
                    n,
                    self.gamma,
                    torch.linspace(0.0, 1.0, 11, dtype=torch.float64),
                    self.n_pseudo_targets,
                )
            )
        marginal = marginal_probability(
            p_refs, refs.reference_in, offline=self.offline, offline_a=a
        )
        scores = rmia_scores(p_target[:n], marginal[:n], p_target[n:], marginal[n:], self.gamma)
        return scores, {"offline_a": a}


__all__ = ["RMIA", "fit_offline_a", "marginal_probability", "rmia_scores"]
