"""Sample-level (record-level) canary audit of DP-SGD through Opacus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedguard.audit import (
    SampleCanaryConfig,
    canary_scores,
    dirac_canary_coordinates,
    gradient_canary_audit,
    max_certifiable_epsilon,
    mislabelled_canaries,
    one_run_audit,
    sample_canary_audit,
)
from fedguard.audit.sample_canaries import epsilon_upper_bounds
from fedguard.errors import ConfigError

BROKEN = SampleCanaryConfig(noise_multiplier=1.0, actual_noise_multiplier=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def correct():
    return sample_canary_audit(SampleCanaryConfig(), seed=0)


@pytest.fixture(scope="module")
def broken():
    return sample_canary_audit(BROKEN, seed=0)


def test_noised_run_bound_is_below_accountant(correct) -> None:
    assert correct.result.kind == "lower_bound"
    assert correct.epsilon_lower <= correct.epsilon_upper_opacus
    assert correct.epsilon_lower <= correct.ceiling
    # z = 1 hides 200 mislabelled canaries: nothing certifiable at 95% (measured: 0.0).
    assert correct.epsilon_lower < 0.25
    assert correct.ratio == pytest.approx(correct.epsilon_lower / correct.epsilon_upper_opacus)


def test_broken_mechanism_is_exposed(correct, broken) -> None:
    # Same claim (z = 1), so the same accounted ε; the optimizer really added no noise.
    assert broken.epsilon_upper_opacus == pytest.approx(correct.epsilon_upper_opacus, rel=1e-2)
    # The unnoised run memorises its canaries: measured ε_LB ≈ 2.0 versus 0.0 for z = 1.
    assert broken.epsilon_lower >= 1.5
    assert broken.epsilon_lower >= correct.epsilon_lower + 1.5
    # Valid bound: never above what the design can certify. With 200 canaries the ceiling
    # (≈ 3.5) is below the claimed ε (≈ 9.4), so this design cannot refute the claim itself.
    assert broken.epsilon_lower <= broken.ceiling + 1e-9
    assert broken.ceiling < broken.epsilon_upper_opacus
    details = broken.result.details
    assert details["n_correct"] / details["n_guesses"] >= 0.9


def test_result_matches_one_run_audit_on_returned_scores(broken) -> None:
    direct = one_run_audit(broken.scores, broken.included, confidence=0.95, delta=1e-5)
    assert broken.epsilon_lower == direct.epsilon
    assert broken.ceiling == direct.details["ceiling"]
    assert broken.ceiling == pytest.approx(3.505, abs=1e-3)
    assert broken.ceiling < max_certifiable_epsilon(200, delta=1e-5)


def test_same_seed_same_scores(correct) -> None:
    again = sample_canary_audit(SampleCanaryConfig(), seed=0)
    np.testing.assert_array_equal(again.scores, correct.scores)
    np.testing.assert_array_equal(again.included, correct.included)
    assert again.epsilon_lower == correct.epsilon_lower


def test_inclusion_truth_reproducible_from_seed() -> None:
    cfg = SampleCanaryConfig()
    first, second = mislabelled_canaries(cfg, 7), mislabelled_canaries(cfg, 7)
    np.testing.assert_array_equal(first.included, second.included)
    assert torch.equal(first.canary_x, second.canary_x)
    assert torch.equal(first.canary_y, second.canary_y)
    other = mislabelled_canaries(cfg, 8)
    assert not np.array_equal(first.included, other.included)
    # Fair coins: 200 of them land in a 99.99% binomial window.
    assert 60 <= int(first.included.sum()) <= 140
    assert bool((first.canary_y != first.canary_true_y).all())
    assert first.canary_y.min() >= 0 and first.canary_y.max() <= 9
    # Disjoint splits of the 1797 digits.
    assert first.train_x.shape == (500, 64) and first.canary_x.shape == (200, 64)
    assert first.test_x.shape[0] == 1797 - 700


def test_accounting_uses_realised_rate_and_steps(correct) -> None:
    n = 500 + int(correct.included.sum())
    batches = math.ceil(n / 32)
    assert correct.sampling_rate == pytest.approx(1.0 / batches)
    assert correct.steps == 30 * batches
    assert correct.epsilon_upper_fedguard == pytest.approx(correct.epsilon_upper_opacus, rel=1e-6)


def test_upper_bounds_agree_with_opacus_accountant() -> None:
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    rdp = compute_rdp(q=0.05, noise_multiplier=1.1, steps=200, orders=orders)
    expected, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)
    eps_opacus, eps_fedguard = epsilon_upper_bounds(1.1, 0.05, 200, 1e-5)
    assert eps_opacus == pytest.approx(expected, rel=1e-9)
    assert eps_fedguard == pytest.approx(expected, rel=1e-4)


def test_scores_closed_forms() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([1, 2])
    loss = canary_scores(logits, labels, "loss")
    expected = -F.cross_entropy(logits, labels, reduction="none").double().numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(canary_scores(logits, labels, "margin"), [-2.0, 2.5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_canaries": 1},
        {"delta": 1e-2},
        {"noise_multiplier": 0.0},
        {"actual_noise_multiplier": -1.0},
        {"n_train": 1700, "n_canaries": 200},
        {"confidence": 1.0},
        {"score": "rank"},
    ],
)
def test_config_validation(kwargs) -> None:
    with pytest.raises(ConfigError):
        SampleCanaryConfig(**kwargs)


def test_fedguard_trainer_path(correct) -> None:
    """fedguard's own DP-SGD (train_dp_sgd): same conclusions as the Opacus path."""
    noised = sample_canary_audit(SampleCanaryConfig(trainer="fedguard"), seed=0)
    unnoised = sample_canary_audit(
        SampleCanaryConfig(trainer="fedguard", actual_noise_multiplier=0.0), seed=0
    )
    n = 500 + int(noised.included.sum())
    assert noised.sampling_rate == pytest.approx(32 / n)  # fedguard's rate B / N
    assert noised.steps == 30 * math.ceil(n / 32)
    assert noised.result.details["trainer"] == "fedguard"
    assert noised.epsilon_lower <= noised.epsilon_upper_fedguard
    assert noised.epsilon_lower < 0.25  # measured 0.0
    assert unnoised.epsilon_lower >= noised.epsilon_lower + 1.5  # measured 2.23
    assert unnoised.epsilon_lower <= unnoised.ceiling + 1e-9


def test_dirac_coordinates_are_never_moved_by_data() -> None:
    from sklearn.datasets import load_digits

    rows, columns = dirac_canary_coordinates(200, 256)
    assert len({(int(r), int(c)) for r, c in zip(rows, columns, strict=True)}) == 200
    assert float(np.abs(load_digits().data[:, columns.numpy()]).max()) == 0.0
    with pytest.raises(ConfigError):
        dirac_canary_coordinates(3 * 16 + 1, 16)


def test_gradient_canaries_correct_and_broken() -> None:
    noised = gradient_canary_audit(SampleCanaryConfig(), seed=0)
    broken = gradient_canary_audit(BROKEN, seed=0)
    assert noised.result.method == "one_run_gradient_canaries"
    # White-box Dirac canaries are stronger than mislabelled inputs (measured 0.90 vs 0.0),
    # and still a valid lower bound below the accountant's ε (≈ 10.4 for 480 steps at q = 1/16).
    assert 0.5 <= noised.epsilon_lower <= noised.epsilon_upper_opacus
    np.testing.assert_array_equal(
        noised.included, mislabelled_canaries(SampleCanaryConfig(), 0).included
    )
    # Without noise no real sample moves a canary coordinate: excluded scores are exactly 0,
    # included ones positive, so every guess is right and the bound reaches the grid's limit.
    assert bool((broken.scores[~broken.included] == 0.0).all())
    assert bool((broken.scores[broken.included] > 0.0).all())
    details = broken.result.details
    assert details["n_correct"] == details["n_guesses"]
    assert broken.epsilon_lower >= 3.0  # measured 3.28; ceiling 3.505
    assert broken.epsilon_lower <= broken.ceiling + 1e-9
    assert broken.epsilon_lower >= noised.epsilon_lower + 1.5
