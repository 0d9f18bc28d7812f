"""Privacy attacks' headlines (fedguard.metrics.attack_headlines): each result beside its
baseline, with the intervals the stored metrics allow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedguard.cli.main import app
from fedguard.config import load_spec
from fedguard.launch import execute
from fedguard.metrics.attack_headlines import auc_interval, headline
from fedguard.metrics.privacy_attack_metrics import auc
from fedguard.metrics.test_accuracy import Z95

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("n1", "n2"), [(26, 26), (100, 100), (10, 300)])
def test_auc_interval_at_chance_has_the_mann_whitney_null_variance(n1: int, n2: int) -> None:
    low, high = auc_interval(0.5, n1, n2)
    sd = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    assert (low, high) == pytest.approx((0.5 - Z95 * sd, 0.5 + Z95 * sd), abs=1e-12)


def test_auc_interval_covers_the_true_auc_about_95_percent_of_the_time() -> None:
    # members ~ N(1, 1), non-members ~ N(0, 1): true AUC = Φ(1/√2) ≈ 0.7602
    true_auc = 0.5 * (1 + math.erf(0.5))
    rng = np.random.default_rng(0)
    hits, trials = 0, 2000
    for _ in range(trials):
        members, nonmembers = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 60)
        scores = np.concatenate([members, nonmembers])
        is_member = np.concatenate([np.ones(40), np.zeros(60)])
        low, high = auc_interval(auc(scores, is_member), 40, 60)
        hits += low <= true_auc <= high
    assert 0.93 <= hits / trials <= 0.97, hits / trials


def test_membership_headline_states_interval_chance_and_an_unreliable_tpr() -> None:
    metrics = {
        "auc": 0.5931952662721893,
        "n_members": 26.0,
        "n_nonmembers": 26.0,
        "tpr_at_1pct_fpr": 0.23076923076923078,
        "tpr_at_1pct_fpr_lower": 0.08974011088457517,
        "tpr_at_1pct_fpr_upper": 0.4364750969413865,
        "tpr_at_1pct_fpr_reliable": 0.0,
        "tpr_at_0.1pct_fpr": 0.23,
        "from_aggregate": 0.0,
    }
    low, high = auc_interval(0.5931952662721893, 26, 26)
    result, notes = headline(metrics)
    assert result == (
        f"AUC 0.593 (95% CI {low:.3f}–{high:.3f}), TPR 23.1% at 1% FPR (95% CI 9.0–43.6%)"
    )
    assert notes == (
        "chance: AUC 0.5, TPR = FPR; 26 members, 26 non-members; the TPR at 1% FPR is not "
        "reliable (under 100 non-members or a tie at the threshold)"
    )


def test_each_score_of_a_sequence_membership_attack_gets_its_own_auc() -> None:
    metrics = {
        "loss.auc": 0.61,
        "loss.n_members": 50.0,
        "loss.n_nonmembers": 50.0,
        "zlib.auc": 0.55,
        "zlib.n_members": 50.0,
        "zlib.n_nonmembers": 50.0,
        "from_aggregate": 1.0,
        "n_clients_in_aggregate": 8.0,
    }
    metrics.update({"loss.tpr_at_1pct_fpr": 0.1, "loss.tpr_at_1pct_fpr_reliable": 0.0})
    metrics.update({"zlib.tpr_at_1pct_fpr": 0.1, "zlib.tpr_at_1pct_fpr_reliable": 0.0})
    result, notes = headline(metrics)
    assert result.startswith("loss AUC 0.610 (95% CI ") and "; zlib AUC 0.550 (95% CI " in result
    # shared member sets and caveats are said once, naming the scores they concern
    assert notes == (
        "chance: AUC 0.5, TPR = FPR; 50 members, 50 non-members; the TPR at 1% FPR of loss, zlib "
        "is not reliable (under 100 non-members or a tie at the threshold); from the aggregate of "
        "8 clients"
    )


def test_reconstruction_headlines_name_their_guessing_baselines_and_recovery_rule() -> None:
    inversion = {
        "psnr_db": 22.24,
        "psnr_db_min": 6.5,
        "ssim": 0.673,
        "baseline_mean_psnr_db": 11.55,
        "baseline_class_mean_psnr_db": 14.52,
        "n_recovered": 9.0,
        "n_true": 26.0,
        "label_accuracy": 1.0,
    }
    result, notes = headline(inversion)
    assert result == (
        "PSNR 22.2 dB (worst sample 6.5 dB), SSIM 0.67; 9 of 26 samples recovered; labels 100% "
        "correct"
    )
    assert "guessing the mean image gets 11.6 dB, its class's mean image 14.5 dB" in notes
    assert "3 dB above both guessing baselines" in notes
    server = {"n_recovered": 12.0, "n_samples": 64.0, "recovered_fraction": 0.1875}
    result, notes = headline(server)
    assert result == "12 of 64 samples recovered"
    assert notes == "recovered: PSNR at least 30 dB and 3 dB above the class-mean guess"


def test_a_random_canary_has_about_one_over_ln2_bits_of_exposure() -> None:
    # the note's baseline: a canary ranked uniformly among |R| candidates has, by the attack's
    # own exposure function, E[exposure] → 1/ln 2 bits as |R| grows
    from fedguard.attacks.text.exposure import exposure_from_rank

    size = 10_000  # the PIN format's candidate space
    expected = sum(exposure_from_rank(rank, size) for rank in range(1, size + 1)) / size
    assert expected == pytest.approx(1 / math.log(2), abs=1e-3)
    assert "about 1.4 bits (1/ln 2)" in headline({"exposure_mean": expected})[1]


def test_text_attacks_and_unknown_metrics() -> None:
    result, notes = headline(
        {
            "exposure_mean": 3.21,
            "exposure_max": 7.9,
            "exposure_fraction_of_max": 0.2,
            "n_secrets": 4,
        }
    )
    assert result == "canary exposure 3.2 bits mean, 7.9 max (20% of the most a canary can have)"
    assert "about 1.4 bits (1/ln 2) expected" in notes
    assert headline({"extracted": 1.0, "n_secrets": 4.0, "extracted_fraction": 0.25})[0] == (
        "1 of 4 secrets extracted"
    )
    # metrics this module does not know are shown as stored, never dropped to nothing
    assert headline({"widgets": 0.5, "from_aggregate": 0.0}) == ("widgets 0.5", "—")


def test_show_of_a_privacy_attack_run_prints_each_attack_beside_its_baseline(
    tmp_path: Path,
) -> None:
    spec = load_spec(ROOT / "configs" / "privacy_attacks.yaml").with_overrides(rounds=1)
    execute(spec, tmp_path / "run")
    out = CliRunner().invoke(app, ["show", str(tmp_path / "run")], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    text = out.output[out.output.index("Privacy attacks") :]
    for name in ("analytic", "inverting_gradients", "loss_threshold", "lira"):
        assert name in text
    assert "chance: AUC 0.5, TPR = FPR" in text
    assert "guessing the mean image gets" in text


def test_hostile_or_corrupt_metrics_give_text_not_a_traceback() -> None:
    # a run folder may come from someone else: out-of-range values are shown, never crash
    result, _ = headline({"auc": 1.7, "n_members": -3.0, "n_nonmembers": 26.0})
    assert result == "AUC 1.700"
    result, _ = headline({"auc": "0.9", "psnr_db": float("nan"), "weird": True})
    assert result == "psnr_db nan"  # as stored; the string and the bool are not numbers
    assert headline({"auc": "0.9"})[0] == "no numeric result"
