"""Gaussian differential privacy (μ-GDP): its (ε, δ) profile and μ lower bounds from test counts.

A mechanism is μ-GDP when no test separates neighbours better than N(0, 1) from N(μ, 1): at
false-positive rate α its false-negative rate is at least ``Φ(Φ⁻¹(1 − α) − μ)``. Hence any test with
``(FPR, FNR)`` certifies ``μ ≥ Φ⁻¹(1 − FPR) − Φ⁻¹(FNR)``; with the Clopper-Pearson upper bounds on
both rates this is a lower bound on μ at the stated confidence (Nasr et al. 2023). The μ-GDP
mechanism is (ε, δ(ε))-DP with (Dong, Roth and Su 2022, Corollary 2.13)

    δ(ε) = Φ(−ε/μ + μ/2) − e^ε · Φ(−ε/μ − μ/2).

Convention: the ε reported by :func:`gdp_audit` is ε(δ) of the *smallest μ-GDP curve consistent
with the observations*. The μ bound is valid for any μ-GDP mechanism; reading it as an (ε, δ) lower
bound assumes the mechanism's trade-off curve is Gaussian (true for the Gaussian mechanism and,
approximately, for DP-SGD/DP-FedAvg — the reason Nasr et al. use it). It is usually tighter than the
direct Clopper-Pearson bound because it uses the whole (FPR, FNR) point rather than one ratio.

References
----------
Dong, J., Roth, A. and Su, W. J. (2022). Gaussian differential privacy. *JRSS B* 84(1), 3-37.
Nasr, M., Hayes, J., Steinke, T., Balle, B., Tramèr, F., Jagielski, M., Carlini, N. and Terzis, A.
(2023). Tight auditing of differentially private machine learning. *USENIX Security 2023*.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from fedguard.errors import require
from fedguard.privacy.audit.binomial import clopper_pearson_lower, clopper_pearson_upper
from fedguard.privacy.audit.classical import threshold_counts
from fedguard.privacy.audit.result import AuditResult


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of a μ-GDP mechanism, ``Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)`` (computed in log space).

    References
    ----------
    Dong, Roth and Su (2022), Corollary 2.13.
    """
    require(mu >= 0.0 and math.isfinite(mu), "mu", "a finite number ≥ 0")
    require(epsilon >= 0.0, "epsilon", "≥ 0")
    if mu == 0.0:
        return 0.0
    log_first = float(stats.norm.logcdf(-epsilon / mu + mu / 2.0))
    log_second = epsilon + float(stats.norm.logcdf(-epsilon / mu - mu / 2.0))
    if log_second >= log_first:
        return 0.0
    return float(math.exp(log_first) * -math.expm1(log_second - log_first))


def gdp_epsilon(mu: float, delta: float, *, tolerance: float = 1e-12) -> float:
    """Smallest ε ≥ 0 with ``δ(ε) ≤ delta`` for a μ-GDP mechanism (δ(ε) decreases in ε).

    Examples
    --------
    ``gdp_epsilon(1.0, 1e-5) ≈ 4.3772`` — the Gaussian mechanism with noise multiplier 1.

    References
    ----------
    Dong, Roth and Su (2022), Corollary 2.13; Balle and Wang (2018), analytic Gaussian mechanism.
    """
    require(0.0 < delta < 1.0, "delta", "in (0, 1)")
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(mu, high) > delta:
        high *= 2.0
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, high, xtol=tolerance))


def gdp_mu_from_rates(fpr: ArrayLike, fnr: ArrayLike) -> NDArray[np.float64]:
    """``max(Φ⁻¹(1 − FPR) − Φ⁻¹(FNR), 0)`` elementwise: the μ a test with these rates certifies.

    References
    ----------
    Dong, Roth and Su (2022) (trade-off function of μ-GDP); Nasr et al. (2023).
    """
    a = np.asarray(fpr, dtype=np.float64)
    b = np.asarray(fnr, dtype=np.float64)
    mu = stats.norm.isf(a) - stats.norm.ppf(b)
    return np.asarray(np.where(np.isnan(mu), 0.0, np.maximum(mu, 0.0)), dtype=np.float64)


def gdp_audit(
    true_positives: ArrayLike,
    n_positives: int,
    false_positives: ArrayLike,
    n_negatives: int,
    *,
    confidence: float = 0.95,
    delta: float = 1e-5,
    n_hypotheses: int | None = None,
) -> AuditResult:
    """μ lower bound, and its ε(δ), from test counts (one test, or the best of several).

    Each rate's exact upper bound fails with probability ``(1 − confidence)/(2·H)`` where ``H`` is
    the number of tests compared (``n_hypotheses``, default: the number of count pairs given), so
    the reported maximum holds at ``confidence``. ``μ_LB = Φ⁻¹(1 − FPR_hi) − Φ⁻¹(FNR_hi)``,
    with ``FNR_hi = 1 − TPR_lo``.

    References
    ----------
    Nasr et al. (2023); Dong, Roth and Su (2022).
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    require(0.0 < delta < 1.0, "delta", "in (0, 1)")
    tp = np.atleast_1d(np.asarray(true_positives, dtype=np.int64))
    fp = np.atleast_1d(np.asarray(false_positives, dtype=np.int64))
    require(tp.shape == fp.shape, "false_positives", "the same shape as true_positives")
    hypotheses = tp.size if n_hypotheses is None else n_hypotheses
    require(hypotheses >= tp.size, "n_hypotheses", "at least the number of tests given")
    tail = (1.0 - confidence) / (2.0 * hypotheses)
    fpr_hi = clopper_pearson_upper(fp, n_negatives, tail)  # (H,)
    fnr_hi = 1.0 - clopper_pearson_lower(tp, n_positives, tail)  # (H,)
    mu = gdp_mu_from_rates(fpr_hi, fnr_hi)  # (H,)
    best = int(np.argmax(mu))
    mu_lb = float(mu[best])
    return AuditResult(
        method="gdp",
        epsilon=gdp_epsilon(mu_lb, delta),
        kind="lower_bound",
        delta=delta,
        confidence=confidence,
        details={
            "mu_lower": mu_lb,
            "test_index": best,
            "fpr_upper": float(fpr_hi[best]),
            "fnr_upper": float(fnr_hi[best]),
            "true_positives": int(tp[best]),
            "n_positives": int(n_positives),
            "false_positives": int(fp[best]),
            "n_negatives": int(n_negatives),
            "n_hypotheses": int(hypotheses),
            "assumption": "epsilon is the (epsilon, delta) profile of the mu-GDP lower bound",
        },
    )


def gdp_threshold_audit(
    scores_with: ArrayLike,
    scores_without: ArrayLike,
    *,
    confidence: float = 0.95,
    delta: float = 1e-5,
    threshold: float | None = None,
) -> AuditResult:
    """:func:`gdp_audit` on the counts of the rule ``score ≥ threshold``.

    With no ``threshold`` every distinct score is tried, paying a Bonferroni correction over them.

    References
    ----------
    Nasr et al. (2023).
    """
    pos = np.asarray(scores_with, dtype=np.float64).ravel()  # (n_pos,)
    neg = np.asarray(scores_without, dtype=np.float64).ravel()  # (n_neg,)
    require(pos.size >= 1, "scores_with", "a non-empty array of scores")
    require(neg.size >= 1, "scores_without", "a non-empty array of scores")
    if threshold is not None:
        thresholds = np.array([threshold], dtype=np.float64)
        tp = np.array([np.sum(pos >= threshold)], dtype=np.int64)
        fp = np.array([np.sum(neg >= threshold)], dtype=np.int64)
    else:
        thresholds, tp, fp = threshold_counts(pos, neg)
    result = gdp_audit(tp, pos.size, fp, neg.size, confidence=confidence, delta=delta)
    chosen = float(thresholds[int(result.details["test_index"])])
    return AuditResult(
        result.method,
        result.epsilon,
        result.kind,
        result.delta,
        result.confidence,
        {**result.details, "threshold": chosen},
    )
