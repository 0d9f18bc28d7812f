"""The verdict rule (fedguard.matrix.verdict) on crafted matrices: it never says the opposite of
the numbers beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedguard.matrix.summary import read_matrix_csv, tidy_frame
from fedguard.matrix.verdict import (
    AT_CHANCE,
    DIVERGED,
    FAILS_WITHOUT_ATTACK,
    FELL,
    HELD,
    NOT_VULNERABLE,
    VULNERABLE,
    answer,
    rule_text,
    upper_bound,
    verdict_frame,
    verdicts,
)


def rows_of(
    accuracy: dict[tuple[str, str], list[float]],
    extra: dict[Any, Any] | None = None,
    status: dict[tuple[str, str, int], str] | None = None,
) -> list[dict[str, Any]]:
    """Store rows for (defense, attack) → accuracy per seed (digits: 10 classes); ``extra`` adds
    metrics per (defense, attack, seed), ``status`` overrides a cell's status."""
    extra, status = extra or {}, status or {}
    out = []
    for (defense, attack), values in accuracy.items():
        for seed, acc in enumerate(values):
            metrics = {"test_accuracy": acc, "n_classes": 10}
            metrics.update(extra.get((defense, attack, seed), {}))
            out.append(
                {
                    "key": f"{defense}-{attack}-{seed}",
                    "attack": attack,
                    "defense": defense,
                    "seed": seed,
                    "axes": [],
                    "status": status.get((defense, attack, seed), "done"),
                    "metrics": metrics,
                    "records": [],
                    "error": None,
                    "seconds": 0.0,
                }
            )
    return out


def outcome(vs, defense: str, attack: str) -> str:
    (v,) = [v for v in vs if v.defense == defense and v.attack == attack]
    return v.outcome


def test_a_defense_worse_than_mean_without_attack_is_not_judged() -> None:
    # krum reaches 0.47 without attack and 0.80 under ALIE: the old rule said "held" (drop −0.33)
    vs = verdicts(
        tidy_frame(
            rows_of(
                {
                    ("mean", "none"): [0.90, 0.91, 0.92],
                    ("mean", "alie"): [0.90, 0.90, 0.91],
                    ("krum", "none"): [0.30, 0.50, 0.61],
                    ("krum", "alie"): [0.80, 0.80, 0.80],
                }
            )
        )
    )
    assert outcome(vs, "krum", "alie") == FAILS_WITHOUT_ATTACK
    (krum,) = [v for v in vs if v.defense == "krum"]
    assert "0.470" in krum.reason and "0.910" in krum.reason


def test_mean_is_the_baseline_vulnerable_or_not_and_defenses_held_or_fell() -> None:
    vs = verdicts(
        tidy_frame(
            rows_of(
                {
                    ("mean", "none"): [0.90, 0.91, 0.92],
                    ("mean", "ipm"): [0.50, 0.55, 0.52],
                    ("mean", "alie"): [0.90, 0.91, 0.91],
                    ("median", "none"): [0.89, 0.90, 0.90],
                    ("median", "ipm"): [0.89, 0.89, 0.90],
                    ("median", "alie"): [0.60, 0.62, 0.58],
                }
            )
        )
    )
    assert outcome(vs, "mean", "ipm") == VULNERABLE
    assert outcome(vs, "mean", "alie") == NOT_VULNERABLE
    assert outcome(vs, "median", "ipm") == HELD
    assert outcome(vs, "median", "alie") == FELL
    # never "held" for the undefended mean, never "vulnerable" for a defense
    assert {v.outcome for v in vs if v.defense == "mean"} <= {VULNERABLE, NOT_VULNERABLE}
    lines = answer(vs)
    assert lines[0].startswith("1 of 2 judged defense × attack pairs held")
    assert any("Undefended baseline (mean): vulnerable to ipm" in line for line in lines)


def test_verdicts_agree_with_the_numbers_they_print() -> None:
    rng = np.random.default_rng(0)
    accuracy = {("mean", "none"): [0.9, 0.91, 0.9]}
    for d in ("a", "b", "c"):
        accuracy[(d, "none")] = list(0.9 + 0.01 * rng.standard_normal(3))
        for atk in ("x", "y"):
            accuracy[(d, atk)] = list(0.9 - rng.uniform(0, 0.2) + 0.01 * rng.standard_normal(3))
    tidy = tidy_frame(rows_of(accuracy))
    for v in verdicts(tidy):
        if v.outcome in (HELD, FELL):
            drops = tidy[
                (tidy.defense == v.defense)
                & (tidy.attack == v.attack)
                & (tidy.metric == "accuracy_drop")
            ]["value"].to_numpy()
            assert v.upper == pytest.approx(upper_bound(drops))
            assert (v.outcome == HELD) == (v.upper <= 0.05)
            assert f"{v.upper:.3f}" in v.sentence()


def test_at_chance_and_diverged_cells_get_no_verdict() -> None:
    rows = rows_of(
        {
            ("mean", "none"): [0.90, 0.91],
            ("mean", "sign_flip"): [0.10, 0.11],  # at chance: 1/10 + 5 points = 0.15
            ("median", "none"): [0.90, 0.90],
            ("median", "sign_flip"): [0.88, 0.89],
            ("trimmed_mean", "none"): [0.90, 0.90],
            ("trimmed_mean", "sign_flip"): [0.88, 0.89],
        },
        status={("trimmed_mean", "sign_flip", 1): "diverged"},
    )
    vs = verdicts(tidy_frame(rows))
    assert outcome(vs, "mean", "sign_flip") == AT_CHANCE
    assert outcome(vs, "median", "sign_flip") == HELD
    assert outcome(vs, "trimmed_mean", "sign_flip") == DIVERGED
    # the count covers defense × attack pairs only: the undefended mean at chance is reported on
    # the baseline's own line, not as a defense pair without a verdict
    lines = answer(vs)
    assert lines[0] == "1 of 1 judged defense × attack pairs held (1 without a verdict)."
    assert any("at chance under sign_flip" in line for line in lines)


def test_a_baseline_at_chance_gives_no_verdict() -> None:
    rows = rows_of(
        {
            ("mean", "none"): [0.12, 0.13],
            ("mean", "x"): [0.12, 0.12],
            ("median", "none"): [0.12, 0.11],
            ("median", "x"): [0.12, 0.12],
        }
    )
    assert {v.outcome for v in verdicts(tidy_frame(rows))} == {AT_CHANCE}


def test_rule_names_only_the_thresholds_that_apply() -> None:
    robustness = tidy_frame(rows_of({("mean", "none"): [0.9], ("mean", "x"): [0.5]}))
    text = rule_text(robustness)
    assert "accuracy drop" in text and "PSNR" not in text and "AUC" not in text
    assert "backdoor" not in text
    privacy = tidy_frame(
        rows_of(
            {("mean", "none"): [0.9], ("mean", "lira"): [0.9]},
            extra={("mean", "lira", 0): {"lira.auc": 0.42}},
        )
    )
    assert "AUC is at most 0.55" in rule_text(privacy) and "PSNR" not in rule_text(privacy)
    assert "accuracy drop" not in rule_text(privacy)  # no attack here is judged by it
    (v,) = verdicts(privacy)
    assert v.outcome == NOT_VULNERABLE and "below 0.5" in v.reason


def test_matrix_csv_implies_the_same_verdicts(tmp_path: Path) -> None:
    tidy = tidy_frame(
        rows_of(
            {
                ("mean", "none"): [0.90, 0.91, 0.92],
                ("mean", "ipm"): [0.50, 0.55, 0.52],
                ("median", "none"): [0.89, 0.90, 0.90],
                ("median", "ipm"): [0.89, 0.89, 0.90],
            }
        )
    )
    tidy.to_csv(tmp_path / "matrix.csv", index=False)
    again = read_matrix_csv(tmp_path / "matrix.csv")
    pd.testing.assert_frame_equal(verdict_frame(verdicts(tidy)), verdict_frame(verdicts(again)))


def test_on_skewed_data_accuracy_at_the_majority_class_share_is_at_chance() -> None:
    # binary data whose test set is 63% one class: a model that always answers it scores 0.63,
    # above 1/classes + 5 points (0.55) — judging a drop from there would judge a model that
    # learned nothing
    accuracy = {
        ("mean", "none"): [0.64, 0.65],
        ("mean", "x"): [0.63, 0.64],
        ("median", "none"): [0.65, 0.64],
        ("median", "x"): [0.64, 0.65],
    }
    skewed = {
        (d, a, s): {"n_classes": 2, "majority_share": 0.63} for (d, a) in accuracy for s in range(2)
    }
    vs = verdicts(tidy_frame(rows_of(accuracy, extra=skewed)))
    assert {v.outcome for v in vs} == {AT_CHANCE}
    assert all("≤ 0.680" in v.reason for v in vs)
    # the same accuracies on balanced binary data are judged
    balanced = {k: {"n_classes": 2, "majority_share": 0.5} for k in skewed}
    vs = verdicts(tidy_frame(rows_of(accuracy, extra=balanced)))
    assert AT_CHANCE not in {v.outcome for v in vs}


def test_a_matrix_cell_records_the_trivial_baseline_its_verdict_uses() -> None:
    from fedguard.matrix.cell import run_cell

    cell = run_cell(
        {
            "rounds": 1,
            "data": {"dataset": "breast_cancer", "partition": "iid"},
            "model": "logreg",
            "clients": {"n_clients": 4},
        }
    )
    assert cell["status"] == "done", cell.get("error")
    assert cell["metrics"]["n_classes"] == 2
    assert 0.55 < cell["metrics"]["majority_share"] < 0.75  # the skewed table's majority class
