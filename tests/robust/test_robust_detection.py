"""Detection metrics against scikit-learn and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fedguard.metrics.detection import (
    auroc,
    confusion,
    detection_summary,
    first_detection_round,
    rounds_until_first_detection,
    tpr_fpr,
)


def test_confusion_counts_by_client_id() -> None:
    ids = [10, 11, 12, 13, 14]
    c = confusion([0, 3], ids, malicious_ids=[10, 11])
    assert (c.true_positives, c.false_positives, c.false_negatives, c.true_negatives) == (
        1,
        1,
        1,
        2,
    )
    assert tpr_fpr([0, 3], ids, [10, 11]) == (0.5, pytest.approx(1 / 3))
    assert math.isnan(tpr_fpr([], ids, [])[0])
    with pytest.raises(ValueError, match="flagged rows"):
        confusion([7], ids, [10])


def test_auroc_matches_sklearn_with_ties_and_inf() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 4, size=15).astype(float)
        truth = rng.random(15) < 0.3
        if truth.all() or not truth.any():
            continue
        ids = list(range(100, 115))
        bad = [i for i, t in zip(ids, truth, strict=True) if t]
        assert auroc(scores, ids, bad) == pytest.approx(roc_auc_score(truth, scores))
    scores = [np.inf, 1.0, 2.0, 0.5]
    assert auroc(scores, [0, 1, 2, 3], [0]) == 1.0
    assert math.isnan(auroc([1.0, 2.0], [0, 1], []))


def test_first_detection_round() -> None:
    flagged = [[5], [], [2, 7], [3]]
    assert first_detection_round(flagged, [3, 7]) == 3
    assert rounds_until_first_detection(flagged, [3, 7]) == 2
    assert first_detection_round(flagged, [9]) is None
    assert first_detection_round(flagged, [3], rounds=[0, 5, 10, 15]) == 15
    s = detection_summary([1], [0.1, 0.9, 0.2], [4, 5, 6], [5])
    assert s == {"tpr": 1.0, "fpr": 0.0, "auroc": 1.0}


def test_run_detection_pools_flags_and_averages_round_auroc() -> None:
    from fedguard.metrics.detection import run_detection

    records = [
        {
            "round": 1,
            "clients": 4,
            "malicious": [3],
            "flagged": [],
            "scores": {"0": 0.1, "1": 0.2, "2": 0.3, "3": 0.9},
        },
        {
            "round": 2,
            "clients": 4,
            "malicious": [3],
            "flagged": [3, 1],
            "scores": {"0": 0.5, "1": 0.2, "2": 0.3, "3": 0.4},
        },
    ]
    out = run_detection(records)
    assert out["detection_tpr"] == 0.5  # 1 of 2 malicious participations flagged
    assert out["detection_fpr"] == 1 / 6  # 1 of 6 honest participations flagged
    assert out["rounds_to_detection"] == 2.0
    assert (
        out["detection_auroc"] == (1.0 + 2 / 3) / 2
    )  # round 1 perfect, round 2: 2 of 3 honest below
    assert run_detection([{"round": 1, "clients": 3, "malicious": [], "flagged": []}]) == {
        "detection_fpr": 0.0
    }
