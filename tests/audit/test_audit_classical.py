"""Classical (Jagielski et al. 2020) ε lower bounds with Clopper-Pearson intervals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from fedguard.audit import (
    clopper_pearson_epsilon,
    epsilon_from_rate_bounds,
    threshold_audit,
)
from fedguard.errors import ConfigError


def test_published_figure_perfect_attack_1000_trials() -> None:
    # 1000/1000 TP, 0/1000 FP, 95% two-sided → ln(0.025^(1/1000) / (1 − 0.025^(1/1000))) ≈ 5.60
    result = clopper_pearson_epsilon(1000, 1000, 0, 1000, confidence=0.95)
    expected = math.log(0.025 ** (1 / 1000) / (1 - 0.025 ** (1 / 1000)))
    assert result.epsilon == pytest.approx(expected, rel=1e-9)
    assert result.epsilon == pytest.approx(5.60, abs=5e-3)
    assert result.kind == "lower_bound"


def test_direct_form_from_independent_interval() -> None:
    tp, fp, n = 700, 50, 1000
    result = clopper_pearson_epsilon(tp, n, fp, n, confidence=0.9, delta=1e-3)
    tpr_lo = stats.binomtest(tp, n).proportion_ci(0.9, "exact").low
    fpr_hi = stats.binomtest(fp, n).proportion_ci(0.9, "exact").high
    direct = math.log((tpr_lo - 1e-3) / fpr_hi)
    swapped = math.log((1 - fpr_hi - 1e-3) / (1 - tpr_lo))
    assert result.epsilon == pytest.approx(max(direct, swapped), rel=1e-9)


def test_swapped_form_is_used_when_it_is_larger() -> None:
    # Every positive flagged, half the negatives too: TPR/FPR ≈ 2, but TNR/FNR is large.
    result = clopper_pearson_epsilon(1000, 1000, 500, 1000)
    tpr_lo, fpr_hi = result.details["tpr_lower"], result.details["fpr_upper"]
    direct = math.log(tpr_lo / fpr_hi)
    swapped = math.log((1 - fpr_hi) / (1 - tpr_lo))
    assert swapped > direct + 3
    assert result.epsilon == pytest.approx(swapped, rel=1e-12)


def test_no_evidence_gives_zero() -> None:
    assert clopper_pearson_epsilon(500, 1000, 500, 1000).epsilon == 0.0
    assert float(epsilon_from_rate_bounds(0.0, 1.0, 0.0)) == 0.0


@pytest.mark.parametrize("tp", [600, 800, 950, 1000])
def test_monotone_in_delta_and_confidence(tp: int) -> None:
    eps_by_delta = [
        clopper_pearson_epsilon(tp, 1000, 10, 1000, delta=d).epsilon for d in (0, 1e-5, 1e-2, 0.1)
    ]
    assert all(a >= b for a, b in itertools.pairwise(eps_by_delta))
    eps_by_conf = [
        clopper_pearson_epsilon(tp, 1000, 10, 1000, confidence=c).epsilon
        for c in (0.5, 0.9, 0.95, 0.999)
    ]
    assert all(a >= b for a, b in itertools.pairwise(eps_by_conf))


def test_monotone_in_true_positives() -> None:
    eps = [clopper_pearson_epsilon(tp, 500, 5, 500).epsilon for tp in range(100, 501, 50)]
    assert all(a <= b for a, b in itertools.pairwise(eps))


def test_threshold_audit_fixed_threshold_uses_its_counts() -> None:
    rng = np.random.default_rng(3)
    with_canary = rng.normal(2.0, 1.0, 400)
    without = rng.normal(0.0, 1.0, 300)
    result = threshold_audit(with_canary, without, threshold=1.5, delta=1e-5)
    ref = clopper_pearson_epsilon(
        int(np.sum(with_canary >= 1.5)), 400, int(np.sum(without >= 1.5)), 300, delta=1e-5
    )
    assert result.epsilon == ref.epsilon
    assert result.details["n_thresholds_tested"] == 1


def test_threshold_sweep_pays_a_bonferroni_correction() -> None:
    rng = np.random.default_rng(4)
    with_canary = rng.normal(3.0, 1.0, 300)
    without = rng.normal(0.0, 1.0, 300)
    swept = threshold_audit(with_canary, without)
    chosen = swept.details["threshold"]
    single = threshold_audit(with_canary, without, threshold=chosen)
    n_thresholds = swept.details["n_thresholds_tested"]
    assert n_thresholds == np.unique(np.concatenate([with_canary, without])).size
    assert swept.details["tail_probability_per_end"] == pytest.approx(0.05 / (2 * n_thresholds))
    assert 0.0 < swept.epsilon < single.epsilon


def test_threshold_audit_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="scores_with"):
        threshold_audit([], [1.0])
    with pytest.raises(ConfigError, match="scores_without"):
        threshold_audit([1.0], [np.nan])
    with pytest.raises(ConfigError, match="delta"):
        clopper_pearson_epsilon(1, 2, 0, 2, delta=1.0)
    with pytest.raises(ConfigError, match="true_positives"):
        clopper_pearson_epsilon(3, 2, 0, 2)
