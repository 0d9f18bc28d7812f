"""Classical auditing: ε lower bounds from a distinguishing test over many runs.

Positives are runs (or trials) *with* the canary, negatives runs *without* it; the attack says
"canary present" when its score is at or above a threshold. If the mechanism is (ε, δ)-DP, every
test satisfies both

    TPR ≤ e^ε · FPR + δ        and        TNR ≤ e^ε · FNR + δ,

so ε ≥ ln((TPR − δ)/FPR) and ε ≥ ln((TNR − δ)/FNR). With exact binomial bounds the audit reports

    ε_LB = max(ln((TPR_lo − δ)/FPR_hi), ln((1 − FPR_hi − δ)/(1 − TPR_lo)), 0).

Both forms use only the lower end of the TPR interval and the upper end of the FPR interval, so
the maximum holds at the same confidence: each end fails with probability ``(1 − confidence)/2``
(the two-sided convention of Jagielski et al. 2020), together with probability ≤ 1 − confidence.

References
----------
Jagielski, M., Ullman, J. and Oprea, A. (2020). Auditing differentially private machine learning:
How private is private SGD? *NeurIPS 2020*.
Nasr, M., Song, S., Thakurta, A., Papernot, N. and Carlini, N. (2021). Adversary instantiation:
Lower bounds for differentially private machine learning. *IEEE S&P 2021*.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedguard.errors import require
from fedguard.privacy.audit.binomial import clopper_pearson_lower, clopper_pearson_upper
from fedguard.privacy.audit.result import AuditResult


def epsilon_from_rate_bounds(
    tpr_lower: ArrayLike, fpr_upper: ArrayLike, delta: float
) -> NDArray[np.float64]:
    """``max(ln((TPR_lo − δ)/FPR_hi), ln((1 − FPR_hi − δ)/(1 − TPR_lo)), 0)`` elementwise.

    A form whose numerator is ``≤ 0`` contributes nothing (it certifies no ε).

    References
    ----------
    Jagielski, Ullman and Oprea (2020).
    """
    tpr = np.asarray(tpr_lower, dtype=np.float64)
    fpr = np.asarray(fpr_upper, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.where(
            (tpr > delta) & (fpr > 0), np.log(np.clip(tpr - delta, 1e-300, None) / fpr), 0.0
        )
        fnr = 1.0 - tpr
        tnr = 1.0 - fpr
        swapped = np.where(
            (tnr > delta) & (fnr > 0), np.log(np.clip(tnr - delta, 1e-300, None) / fnr), 0.0
        )
    return np.asarray(np.maximum(np.maximum(direct, swapped), 0.0), dtype=np.float64)


def _check_common(confidence: float, delta: float) -> None:
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    require(0.0 <= delta < 1.0, "delta", "in [0, 1)")


def clopper_pearson_epsilon(
    true_positives: int,
    n_positives: int,
    false_positives: int,
    n_negatives: int,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
) -> AuditResult:
    """ε lower bound from the counts of one fixed test (threshold chosen before seeing the data).

    Parameters
    ----------
    true_positives, n_positives
        Trials with the canary, and how many of them the test flagged.
    false_positives, n_negatives
        Trials without the canary, and how many of them the test flagged.
    confidence
        Two-sided confidence of each Clopper-Pearson interval; the bound holds with at least this
        probability.
    delta
        The δ of the (ε, δ) claim being audited.

    Returns
    -------
    AuditResult
        ``kind="lower_bound"``, ``method="clopper_pearson"``.

    Examples
    --------
    1000/1000 true positives, 0/1000 false positives at 95%: ``ln(0.99632/0.0036821) ≈ 5.60``.

    References
    ----------
    Jagielski, Ullman and Oprea (2020) (Monte Carlo estimation with Clopper-Pearson).
    """
    _check_common(confidence, delta)
    require(n_positives >= 1, "n_positives", "a positive integer")
    require(n_negatives >= 1, "n_negatives", "a positive integer")
    require(0 <= true_positives <= n_positives, "true_positives", "between 0 and n_positives")
    require(0 <= false_positives <= n_negatives, "false_positives", "between 0 and n_negatives")
    tail = (1.0 - confidence) / 2.0
    tpr_lo = float(clopper_pearson_lower(true_positives, n_positives, tail))
    fpr_hi = float(clopper_pearson_upper(false_positives, n_negatives, tail))
    eps = float(epsilon_from_rate_bounds(tpr_lo, fpr_hi, delta))
    return AuditResult(
        method="clopper_pearson",
        epsilon=eps,
        kind="lower_bound",
        delta=delta,
        confidence=confidence,
        details={
            "true_positives": int(true_positives),
            "n_positives": int(n_positives),
            "false_positives": int(false_positives),
            "n_negatives": int(n_negatives),
            "tpr_lower": tpr_lo,
            "fpr_upper": fpr_hi,
        },
    )


def threshold_counts(
    scores_with: NDArray[np.float64], scores_without: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Every distinct threshold ``t`` (rule: flag ``score ≥ t``) with its TP and FP counts.

    Returns ``(thresholds (T,), true_positives (T,), false_positives (T,))``, thresholds ascending.
    """
    thresholds = np.unique(np.concatenate([scores_with, scores_without]))  # (T,)
    pos = np.sort(scores_with)
    neg = np.sort(scores_without)
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")  # (T,)
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")  # (T,)
    return thresholds, tp.astype(np.int64), fp.astype(np.int64)


def threshold_audit(
    scores_with: ArrayLike,
    scores_without: ArrayLike,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    threshold: float | None = None,
) -> AuditResult:
    """ε lower bound from attack scores of trials with and without the canary.

    Higher scores mean "canary present". With a ``threshold`` fixed in advance the bound is
    :func:`clopper_pearson_epsilon` of its counts. Without one, every distinct score is tried and
    the best is reported; that choice is made after seeing the outcome, so each threshold is
    tested at ``(1 − confidence)/T`` (Bonferroni over ``T`` thresholds, split between the two
    interval ends), which keeps the maximum valid at ``confidence``.

    References
    ----------
    Jagielski, Ullman and Oprea (2020); Nasr et al. (2021) on choosing the threshold.
    """
    _check_common(confidence, delta)
    pos = np.asarray(scores_with, dtype=np.float64).ravel()  # (n_pos,)
    neg = np.asarray(scores_without, dtype=np.float64).ravel()  # (n_neg,)
    require(pos.size >= 1, "scores_with", "a non-empty array of scores")
    require(neg.size >= 1, "scores_without", "a non-empty array of scores")
    require(bool(np.all(np.isfinite(pos))), "scores_with", "finite numbers")
    require(bool(np.all(np.isfinite(neg))), "scores_without", "finite numbers")
    if threshold is not None:
        result = clopper_pearson_epsilon(
            int(np.sum(pos >= threshold)),
            pos.size,
            int(np.sum(neg >= threshold)),
            neg.size,
            confidence=confidence,
            delta=delta,
        )
        return AuditResult(
            "clopper_pearson",
            result.epsilon,
            "lower_bound",
            delta,
            confidence,
            {**result.details, "threshold": float(threshold), "n_thresholds_tested": 1},
        )
    thresholds, tp, fp = threshold_counts(pos, neg)
    n_tested = thresholds.size
    tail = (1.0 - confidence) / (2.0 * n_tested)
    tpr_lo = clopper_pearson_lower(tp, pos.size, tail)  # (T,)
    fpr_hi = clopper_pearson_upper(fp, neg.size, tail)  # (T,)
    eps = epsilon_from_rate_bounds(tpr_lo, fpr_hi, delta)  # (T,)
    best = int(np.argmax(eps))
    return AuditResult(
        method="clopper_pearson",
        epsilon=float(eps[best]),
        kind="lower_bound",
        delta=delta,
        confidence=confidence,
        details={
            "threshold": float(thresholds[best]),
            "n_thresholds_tested": int(n_tested),
            "true_positives": int(tp[best]),
            "n_positives": int(pos.size),
            "false_positives": int(fp[best]),
            "n_negatives": int(neg.size),
            "tpr_lower": float(tpr_lo[best]),
            "fpr_upper": float(fpr_hi[best]),
            "tail_probability_per_end": tail,
        },
    )
