"""The final test accuracy's interval and chance baseline (fedguard.metrics.test_accuracy)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy.stats import binomtest

from fedguard.metrics.test_accuracy import accuracy_text, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (10, 10), (332, 360), (1, 3), (997, 1000)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)
    assert low <= k / n <= high


def test_wilson_interval_closed_form_at_half() -> None:
    # 5/10: centre 1/2, half-width z·sqrt(1/40 + z²/400)/(1 + z²/10)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(5, 10) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-15)


def test_accuracy_text_states_interval_test_size_and_chance() -> None:
    text = accuracy_text({"final_test_accuracy": 332 / 360, "test_samples": 360, "n_classes": 10})
    low, high = wilson_interval(332, 360)
    assert text == (
        f"0.9222; 95% CI {low:.3f}–{high:.3f} over 360 test samples (Wilson); chance 0.100"
    )


def test_accuracy_text_of_a_language_model_claims_no_binomial_interval() -> None:
    text = accuracy_text({"final_test_accuracy": 0.4, "test_sequences": 50, "n_classes": 96})
    assert text == (
        "0.4000; per-token, averaged over 50 test sequences; no binomial interval; chance 0.010"
    )


def test_accuracy_text_of_an_older_summary_or_no_evaluation() -> None:
    assert accuracy_text({"final_test_accuracy": 0.5}) == "0.5000"
    assert accuracy_text({"final_test_accuracy": None}) is None
    assert accuracy_text({"final_test_accuracy": float("nan"), "test_samples": 10}) is None


def test_backdoor_text_states_its_convention_and_interval() -> None:
    from fedguard.metrics.test_accuracy import backdoor_text

    low, high = wilson_interval(206, 324)
    assert backdoor_text({"backdoor_success": 206 / 324, "triggered_samples": 324}) == (
        "0.6358; share of triggered non-target test samples classified as the target; "
        f"95% CI {low:.3f}–{high:.3f} over 324 of them (Wilson)"
    )
    assert backdoor_text({"backdoor_success": None}) is None


def _one_round(dataset: str, n_clients: int, **extra: Any) -> Any:
    """The result of a one-round logistic-regression run on ``dataset`` (IID clients)."""
    from fedguard.config import parse_spec
    from fedguard.launch import execute

    spec = {
        "rounds": 1,
        "data": {"dataset": dataset, "partition": "iid"},
        "model": "logreg",
        "clients": {"n_clients": n_clients},
        **extra,
    }
    return execute(parse_spec(spec))


def test_a_backdoor_run_records_how_many_triggered_samples_its_rate_is_over() -> None:
    result = _one_round(
        "digits", 10, attack={"n_malicious": 2, "data_attack": {"name": "backdoor"}}
    )
    test_labels = result.simulation.data.test.labels
    target = result.simulation.components.data_attack.target_label
    assert result.summary["triggered_samples"] == int((test_labels != target).sum())
    assert result.summary["test_samples"] == len(test_labels)


def test_hostile_or_corrupt_summaries_give_text_not_a_traceback() -> None:
    from fedguard.metrics.test_accuracy import backdoor_text

    assert accuracy_text({"final_test_accuracy": 5.0, "test_samples": 10}) == "5.0000"
    assert accuracy_text({"final_test_accuracy": 0.5, "test_samples": True, "n_classes": True}) == (
        "0.5000"
    )
    assert accuracy_text({"final_test_accuracy": 0.5, "test_samples": -4, "n_classes": 0}) == (
        "0.5000"
    )
    assert backdoor_text({"backdoor_success": -1.0, "triggered_samples": 9}) == (
        "-1.0000; share of triggered non-target test samples classified as the target"
    )


def test_majority_share_is_a_constant_predictors_accuracy() -> None:
    import torch

    from fedguard.metrics.test_accuracy import majority_share

    assert majority_share(torch.tensor([0, 1, 1, 2, 1])) == pytest.approx(3 / 5)
    assert majority_share(torch.tensor([3, 3])) == 1.0
    assert majority_share(torch.zeros(2, 4, dtype=torch.long)) is None  # next-token targets
    assert majority_share(torch.tensor([], dtype=torch.long)) is None


def test_accuracy_text_states_the_most_frequent_class_beside_chance() -> None:
    summary = {"final_test_accuracy": 0.64, "test_samples": 114, "n_classes": 2}
    summary["majority_share"] = 72 / 114
    text = accuracy_text(summary)
    assert text is not None
    assert text.endswith("chance 0.500, always the most frequent test class 0.632")
    # a hostile value is left out, not printed
    assert accuracy_text({**summary, "majority_share": 7.0}).endswith("chance 0.500")  # type: ignore[union-attr]


def test_a_run_records_its_test_sets_most_frequent_class_share() -> None:
    result = _one_round("breast_cancer", 4)
    labels = result.simulation.data.test.labels
    share = result.summary["majority_share"]
    assert share == max(int((labels == c).sum()) for c in labels.unique()) / len(labels)
    assert share > 0.55  # the breast-cancer table is skewed: well above chance's 0.5
