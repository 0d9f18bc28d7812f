"""Likelihood-ratio attack, LiRA (Carlini et al. 2022)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.types import ServerView

from ._common import (
    MembershipAttack,
    MembershipTask,
    ResolvedTarget,
    attack_generator,
    check_target,
    reference_models,
)


def logit_scaled_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """``φ = log p_y − log Σ_{j≠y} p_j = z_y − logsumexp_{j≠y} z_j`` in float64.

    Computed directly from the logits (the softmax normaliser cancels), so it stays finite when
    ``p_y`` rounds to 1. ``(..., N, C) × (N,) → (..., N)``.
    """
    z = logits.double()
    idx = labels.long().expand(z.shape[:-1]).unsqueeze(-1)
    z_y = torch.gather(z, -1, idx).squeeze(-1)
    others = z.scatter(-1, idx, -math.inf)
    return z_y - torch.logsumexp(others, dim=-1)


def _masked_mean_var(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-column mean, population variance and count over rows where ``mask``. ``(K, N)``."""
    w = mask.double()
    count = w.sum(dim=0)  # (N,)
    mean = (w * values).sum(dim=0) / count.clamp_min(1)
    var = (w * (values - mean) ** 2).sum(dim=0) / count.clamp_min(1)
    return mean, var, count


def _normal_logpdf(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def lira_scores(
    target_stat: Tensor,
    shadow_stats: Tensor,
    shadow_in: Tensor,
    *,
    online: bool,
    fixed_variance: bool,
    min_count: int = 4,
    min_std: float = 1e-4,
) -> Tensor:
    """LiRA membership scores (higher = member).

    ``target_stat (N,)``: φ of the target on each candidate; ``shadow_stats (K, N)``: φ of each
    shadow; ``shadow_in (K, N)``: whether the candidate was in that shadow's training set.

    * online: ``log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²)``;
    * offline: ``log Φ((φ − μ_out)/σ_out)``, the one-sided test against the OUT Gaussian.

    ``fixed_variance`` pools one variance over all candidates (per IN / OUT), which is more
    stable with few shadows; otherwise each candidate has its own, except that a candidate with
    fewer than ``min_count`` IN (OUT) shadows uses the pooled variance (a variance from two or
    three values is too noisy to divide by). A candidate without any IN (OUT) shadow uses the
    pooled IN (OUT) mean; standard deviations are floored at ``min_std``.
    """
    stats = shadow_stats.double()
    phi = target_stat.double()
    if bool(shadow_in.all()) or (online and not bool(shadow_in.any())):
        # the Gaussians would be fitted to nothing (NaN scores): say what to change instead
        raise ConfigError(
            "LiRA needs candidates both inside and outside the shadow models' training sets; "
            "raise n_shadows (or n_candidates)."
        )
    mu_out, var_out, n_out = _masked_mean_var(stats, ~shadow_in)
    glob_out = stats[~shadow_in]
    mu_out = torch.where(n_out > 0, mu_out, glob_out.mean())
    pooled_out = ((stats - mu_out) ** 2)[~shadow_in].mean()
    var_out = pooled_out.expand_as(mu_out) if fixed_variance else var_out
    var_out = torch.where(n_out >= min_count, var_out, pooled_out)
    sd_out = var_out.sqrt().clamp_min(min_std)
    if not online:
        return torch.special.log_ndtr((phi - mu_out) / sd_out)
    mu_in, var_in, n_in = _masked_mean_var(stats, shadow_in)
    glob_in = stats[shadow_in]
    mu_in = torch.where(n_in > 0, mu_in, glob_in.mean())
    pooled_in = ((stats - mu_in) ** 2)[shadow_in].mean()
    var_in = pooled_in.expand_as(mu_in) if fixed_variance else var_in
    var_in = torch.where(n_in >= min_count, var_in, pooled_in)
    sd_in = var_in.sqrt().clamp_min(min_std)
    return _normal_logpdf(phi, mu_in, sd_in) - _normal_logpdf(phi, mu_out, sd_out)


@dataclass(frozen=True)
class LiRA(MembershipAttack):
    """Likelihood-ratio membership inference with shadow models.

    Shadow models train on random subsets of ``candidates ∪ population`` of the target's
    training-set size, each candidate IN about half of them (a client target's shadows: a random
    half of the candidates, :func:`~attacks.membership._common.reference_masks`), vectorized
    over shadows; their logit-scaled confidences φ on each candidate, split by IN/OUT, are
    fitted with Gaussians.
    No test-time augmentation (one query per point).

    Parameters
    ----------
    n_shadows
        Number of shadow models (the paper uses 64–256; ≥ 16 is reasonable on small data).
    online
        Online (IN and OUT Gaussians) or offline (one-sided test against OUT only).
    fixed_variance
        One pooled variance instead of per-example variances. The default (True) suits the
        default 16 shadows; the paper's per-example variance needs many more (≥ 64).
    target, target_client, at_round, n_candidates, shadow_steps, seed
        As in :class:`~attacks.membership._common.MembershipAttack` (the seed drives shadow
        subsets, batches and initialisation).

    References
    ----------
    Carlini, Chien, Nasr, Song, Terzis, Tramèr. "Membership Inference Attacks From First
    Principles." IEEE S&P 2022.
    """

    attack_name: ClassVar[str] = "lira"
    n_shadows: int = 16
    online: bool = True
    fixed_variance: bool = True
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    n_candidates: int = 200
    shadow_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_shadows >= 2, "n_shadows", "an integer ≥ 2")
        check_target(self.target, self.target_client, self.at_round, self.n_candidates)

    def score_candidates(
        self, view: ServerView, task: MembershipTask, tgt: ResolvedTarget
    ) -> tuple[Tensor, Mapping[str, float]]:
        gen = attack_generator(self.seed, view.round, tgt.client_id, self.attack_name)
        refs = reference_models(task, tgt, self.n_shadows, gen)
        n = refs.n_candidates
        labels = refs.pool_labels[:n]
        phi_target = logit_scaled_confidence(refs.target_logits[:n], labels)  # (N,)
        phi_shadow = logit_scaled_confidence(refs.reference_logits[:, :n], labels)  # (K, N)
        scores = lira_scores(
            phi_target,
            phi_shadow,
            refs.reference_in[:, :n],
            online=self.online,
            fixed_variance=self.fixed_variance,
        )
        return scores, {}


__all__ = ["LiRA", "lira_scores", "logit_scaled_confidence"]
