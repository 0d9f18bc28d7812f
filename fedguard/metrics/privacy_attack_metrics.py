"""Metrics for privacy attacks: reconstruction quality and membership-inference power.

Pure functions on tensors / arrays. Reconstruction metrics (MSE, PSNR, SSIM, per-feature error,
exact-match rate, label accuracy) are computed after matching reconstructions to the ground truth
with the Hungarian algorithm, next to trivial baselines (the dataset-mean image, class-mean images
given the true labels) that any reconstruction must beat to count as *recovered*. Membership metrics (AUC, ROC, TPR at a fixed FPR) come with exact
Clopper-Pearson intervals, and :func:`dp_consistency` checks a measured ROC against an
(ε, δ)-DP guarantee.

References
----------
Wang, Bovik, Sheikh, Simoncelli. "Image quality assessment: from error visibility to structural
similarity." IEEE TIP 13(4), 2004.
Kuhn. "The Hungarian method for the assignment problem." Naval Research Logistics Quarterly, 1955.
Clopper, Pearson. "The use of confidence or fiducial limits illustrated in the case of the
binomial." Biometrika 26(4), 1934.
Carlini, Chien, Nasr, Song, Terzis, Tramèr. "Membership Inference Attacks From First Principles."
IEEE S&P 2022 (TPR at low FPR as the headline metric).
Kairouz, Oh, Viswanath. "The composition theorem for differential privacy." ICML 2015
(hypothesis-testing view: TPR ≤ e^ε·FPR + δ for any test).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import beta as beta_dist
from torch import Tensor

# --------------------------------------------------------------------------------------------
# Reconstruction quality


def mse_per_sample(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Mean squared error of each sample over all its features. ``(B, ...) × (B, ...) → (B,)``."""
    diff = (reconstructed.double() - original.double()).reshape(reconstructed.shape[0], -1)
    return (diff**2).mean(dim=1)


def psnr_per_sample(reconstructed: Tensor, original: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10·log10(range² / MSE)``, per sample ``(B,)``.

    An exact reconstruction (MSE = 0) gives ``+inf``.
    """
    mse = mse_per_sample(reconstructed, original)  # (B,)
    return 10.0 * torch.log10(torch.as_tensor(data_range**2, dtype=torch.float64) / mse)


def mean_image_psnr(original: Tensor, reference: Tensor, data_range: float = 1.0) -> Tensor:
    """Trivial baseline: PSNR of guessing every sample as the mean of ``reference`` (the dataset
    mean image). ``(B, ...) × (M, ...) → (B,)`` dB."""
    guess = reference.double().mean(dim=0, keepdim=True).expand_as(original.double())
    return psnr_per_sample(guess, original, data_range)


def class_mean_psnr(
    original: Tensor,
    labels: Tensor,
    reference: Tensor,
    reference_labels: Tensor,
    data_range: float = 1.0,
) -> Tensor:
    """Trivial baseline given the true labels: PSNR of guessing each sample as the mean of the
    ``reference`` samples of its class (the dataset mean for a class absent from ``reference``).
    ``(B, ...), (B,), (M, ...), (M,) → (B,)`` dB."""
    ref = reference.double().reshape(reference.shape[0], -1)  # (M, F)
    overall = ref.mean(dim=0)
    guesses = []
    for label in labels.long().tolist():
        members = ref[reference_labels.long() == label]
        guesses.append(members.mean(dim=0) if members.shape[0] else overall)
    guess = torch.stack(guesses).reshape(original.shape)
    return psnr_per_sample(guess, original, data_range)


def recovered(psnr: Tensor, *baselines: Tensor, margin_db: float = 3.0) -> Tensor:
    """``(B,)`` bool: a reconstruction counts as *recovered* when its PSNR beats every trivial
    baseline of the same sample by at least ``margin_db`` (3 dB: half the baseline's MSE)."""
    best = torch.stack(baselines).max(dim=0).values  # (B,)
    return psnr >= best + margin_db


def _gaussian_window(size: int, sigma: float) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)  # (size, size)


def ssim_per_sample(
    reconstructed: Tensor,
    original: Tensor,
    data_range: float = 1.0,
    window_size: int = 7,
    sigma: float = 1.5,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, for small images.

    Inputs are ``(B, C, H, W)`` or ``(B, H, W)``. Local statistics use a Gaussian window of
    standard deviation ``sigma``; the window side is ``min(window_size, H, W)`` rounded down to an
    odd number, so 8×8 images get a 7×7 window. Only fully covered ("valid") positions are used,
    population (biased) variances as in the paper, ``K1 = 0.01, K2 = 0.03``; the per-channel SSIM
    maps are averaged. Returns ``(B,)`` in float64.
    """
    x = reconstructed.double()
    y = original.double()
    if x.dim() == 3:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError("SSIM needs images shaped (B, C, H, W) or (B, H, W).")
    _, channels, height, width = x.shape
    side = min(window_size, height, width)
    side = side if side % 2 == 1 else side - 1
    window = _gaussian_window(side, sigma).expand(channels, 1, side, side)  # (C, 1, s, s)

    def filt(t: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(t, window, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


def feature_abs_error(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Mean absolute error of each feature over the batch (tabular data). ``→ (n_features,)``."""
    diff = (reconstructed.double() - original.double()).reshape(reconstructed.shape[0], -1)
    return diff.abs().mean(dim=0)


def exact_match_rate(reconstructed: Tensor, original: Tensor, tolerance: float) -> float:
    """Fraction of (sample, feature) entries recovered within ``tolerance`` (tabular data)."""
    diff = (reconstructed.double() - original.double()).abs()
    return float((diff <= tolerance).double().mean())


def hungarian_match(reconstructed: Tensor, original: Tensor) -> tuple[Tensor, Tensor]:
    """Pair reconstructions with originals minimising the total MSE (Kuhn 1955).

    Works for unequal counts (``R`` reconstructions, ``O`` originals): ``min(R, O)`` pairs are
    returned as index tensors ``(rec_idx, orig_idx)``.
    """
    a = reconstructed.double().reshape(reconstructed.shape[0], -1)  # (R, F)
    b = original.double().reshape(original.shape[0], -1)  # (O, F)
    cost = torch.cdist(a, b) ** 2 / a.shape[1]  # (R, O) pairwise MSE
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def label_accuracy(predicted: Tensor, true: Tensor) -> float:
    """Fraction of equal labels between two aligned ``(B,)`` tensors."""
    return float((predicted.long() == true.long()).double().mean())


def label_multiset_accuracy(predicted: Tensor, true: Tensor, n_classes: int) -> float:
    """Order-free label accuracy: ``Σ_c min(count_pred(c), count_true(c)) / B``."""
    cp = torch.bincount(predicted.long(), minlength=n_classes)
    ct = torch.bincount(true.long(), minlength=n_classes)
    return float(torch.minimum(cp, ct).sum()) / max(int(true.numel()), 1)


# --------------------------------------------------------------------------------------------
# Membership inference


@dataclass(frozen=True)
class RocData:
    """ROC curve at every distinct threshold (scores ≥ threshold ⇒ "member").

    ``true_positives``/``false_positives`` are counts, so exact intervals can be derived.
    """

    thresholds: np.ndarray  # (T,) decreasing; the first is +inf (nothing flagged)
    true_positives: np.ndarray  # (T,)
    false_positives: np.ndarray  # (T,)
    n_members: int
    n_nonmembers: int

    @property
    def tpr(self) -> np.ndarray:
        return self.true_positives / self.n_members

    @property
    def fpr(self) -> np.ndarray:
        return self.false_positives / self.n_nonmembers


def _as_numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def roc_curve(scores: Tensor | np.ndarray, is_member: Tensor | np.ndarray) -> RocData:
    """ROC of a membership score (higher = more likely a member), ties handled as one threshold."""
    s = _as_numpy(scores)
    m = _as_numpy(is_member) > 0.5
    if s.shape != m.shape or s.ndim != 1:
        raise ValueError("scores and is_member must be 1-D arrays of the same length.")
    if not np.all(np.isfinite(s)):
        raise ValueError("membership scores must be finite.")
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs at least one member and one non-member.")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, m_sorted = s[order], m[order]
    tp = np.cumsum(m_sorted)
    fp = np.cumsum(~m_sorted)
    last_of_tie = np.r_[np.diff(s_sorted) != 0, True]
    thresholds = np.r_[np.inf, s_sorted[last_of_tie]]
    return RocData(
        thresholds=thresholds,
        true_positives=np.r_[0, tp[last_of_tie]].astype(np.int64),
        false_positives=np.r_[0, fp[last_of_tie]].astype(np.int64),
        n_members=n_pos,
        n_nonmembers=n_neg,
    )


def auc(scores: Tensor | np.ndarray, is_member: Tensor | np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, ties count one half)."""
    roc = roc_curve(scores, is_member)
    return float(np.trapezoid(roc.tpr, roc.fpr))


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval (Clopper & Pearson 1934)."""
    if trials <= 0:
        raise ValueError("Clopper-Pearson needs at least one trial.")
    alpha = 1.0 - confidence
    lower = (
        0.0
        if successes == 0
        else float(beta_dist.ppf(alpha / 2, successes, trials - successes + 1))
    )
    upper = (
        1.0
        if successes == trials
        else float(beta_dist.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return lower, upper


@dataclass(frozen=True)
class TprAtFpr:
    """TPR at a target FPR (the last ROC point with FPR strictly below it), with exact intervals.

    ``reliable`` is False when either caveat applies: fewer than ``1/target_fpr`` non-members
    (``enough_nonmembers``), or ``tied_at_threshold`` — the next ROC point is one score shared
    by members and non-members, so breaking that tie in the members' favour would give
    ``tpr_if_ties_broken`` instead of ``tpr``.
    """

    target_fpr: float
    tpr: float
    fpr: float
    tpr_interval: tuple[float, float]
    fpr_interval: tuple[float, float]
    reliable: bool
    enough_nonmembers: bool = True
    tied_at_threshold: bool = False
    tpr_if_ties_broken: float = math.nan


def tpr_at_fpr(
    scores: Tensor | np.ndarray,
    is_member: Tensor | np.ndarray,
    target_fpr: float,
    confidence: float = 0.95,
) -> TprAtFpr:
    """TPR at a fixed FPR with Clopper-Pearson intervals on both rates.

    Convention of the LiRA reference code (Carlini et al. 2022): the TPR of the *last* ROC point
    (distinct thresholds, tied scores one point) whose FPR is *strictly below* the target,
    ``tpr[np.where(fpr < target)[0][-1]]``, on the full ROC (sklearn's
    ``drop_intermediate=False``; the reference's default thinning of collinear points can only
    give a lower figure). A :class:`UserWarning` is raised, and the result flagged
    ``reliable=False``, when it cannot be trusted:

    * with ``N`` non-members an FPR below ``1/N`` cannot be measured (one false positive already
      reaches it): fewer than ``1/target_fpr`` non-members;
    * the next ROC point is a tie of members and non-members: the reported TPR then depends on
      how ties are broken (between ``tpr`` and ``tpr_if_ties_broken``).
    """
    if not 0.0 < target_fpr <= 1.0:
        raise ValueError("target_fpr must be in (0, 1].")
    roc = roc_curve(scores, is_member)
    enough = roc.n_nonmembers * target_fpr >= 1.0
    if not enough:
        warnings.warn(
            f"TPR at FPR={target_fpr:g} is not meaningful with only {roc.n_nonmembers} "
            f"non-members (need at least {math.ceil(1 / target_fpr)}).",
            UserWarning,
            stacklevel=2,
        )
    ok = np.nonzero(roc.fpr < target_fpr)[0]  # never empty: the first point has FPR 0
    i = int(ok[-1])  # the thresholds are decreasing, so the last admissible one has the most TP
    tp, fp = int(roc.true_positives[i]), int(roc.false_positives[i])
    tp_tied = tp
    if i + 1 < len(roc.thresholds):
        next_tp, next_fp = int(roc.true_positives[i + 1]), int(roc.false_positives[i + 1])
        if next_tp > tp and next_fp > fp:  # one score shared by members and non-members
            tp_tied = next_tp
    tied = tp_tied > tp
    if tied:
        warnings.warn(
            f"TPR at FPR={target_fpr:g} depends on tie-breaking: {tp_tied - tp} members share "
            f"one score with non-members at the threshold (TPR {tp / roc.n_members:.3f}, "
            f"{tp_tied / roc.n_members:.3f} if the tie were broken for the members).",
            UserWarning,
            stacklevel=2,
        )
    return TprAtFpr(
        target_fpr=target_fpr,
        tpr=tp / roc.n_members,
        fpr=fp / roc.n_nonmembers,
        tpr_interval=clopper_pearson(tp, roc.n_members, confidence),
        fpr_interval=clopper_pearson(fp, roc.n_nonmembers, confidence),
        reliable=enough and not tied,
        enough_nonmembers=enough,
        tied_at_threshold=tied,
        tpr_if_ties_broken=tp_tied / roc.n_members,
    )


@dataclass(frozen=True)
class DpCheck:
    """Result of :func:`dp_consistency`: ``violations`` lists the offending thresholds."""

    epsilon: float
    delta: float
    consistent: bool
    max_excess: float  # max over operating points of lower(TPR) − (e^ε·upper(FPR) + δ)
    violations: tuple[float, ...]  # thresholds at which the guarantee is contradicted


def dp_consistency(
    scores: Tensor | np.ndarray,
    is_member: Tensor | np.ndarray,
    epsilon: float,
    delta: float,
    confidence: float = 0.95,
) -> DpCheck:
    """Check a measured ROC against an (ε, δ)-DP guarantee at every operating point.

    DP bounds every membership test by ``TPR ≤ e^ε·FPR + δ`` and, for the complementary test,
    ``1 − FPR ≤ e^ε·(1 − TPR) + δ`` (Kairouz et al. 2015). At each threshold the Clopper-Pearson
    lower bound of the left side is compared with the upper bound of the right side; one strict
    excess is a statistically significant contradiction of the claimed guarantee. The confidence
    is per operating point (no multiplicity correction: the check errs towards reporting).
    """
    roc = roc_curve(scores, is_member)
    bound = math.exp(epsilon)
    thresholds: list[float] = []
    max_excess = -math.inf
    for t, tp, fp in zip(roc.thresholds, roc.true_positives, roc.false_positives, strict=True):
        tpr_lo, _ = clopper_pearson(int(tp), roc.n_members, confidence)
        _, fpr_hi = clopper_pearson(int(fp), roc.n_nonmembers, confidence)
        excess = max(
            tpr_lo - (bound * fpr_hi + delta), (1 - fpr_hi) - (bound * (1 - tpr_lo) + delta)
        )
        max_excess = max(max_excess, excess)
        if excess > 0:
            thresholds.append(float(t))
    return DpCheck(
        epsilon=epsilon,
        delta=delta,
        consistent=not thresholds,
        max_excess=float(max_excess),
        violations=tuple(thresholds),
    )


__all__ = [
    "DpCheck",
    "RocData",
    "TprAtFpr",
    "auc",
    "class_mean_psnr",
    "clopper_pearson",
    "dp_consistency",
    "exact_match_rate",
    "feature_abs_error",
    "hungarian_match",
    "label_accuracy",
    "label_multiset_accuracy",
    "mean_image_psnr",
    "mse_per_sample",
    "psnr_per_sample",
    "recovered",
    "roc_curve",
    "ssim_per_sample",
    "tpr_at_fpr",
]
