"""The audit on a Gaussian release with known ε: valid when correct, catches a broken mechanism."""

from __future__ import annotations

import dp_accounting
import pytest

from fedguard.audit import (
    canary_cosines,
    canary_directions,
    canary_epsilon_estimate,
    canary_inclusion,
    max_certifiable_epsilon,
    one_run_audit,
)
from fedguard.audit.synthetic import gaussian_sum_release
from fedguard.rng import torch_generator

N_CANARIES = 1000
DIMENSION = 2000
DELTA = 1e-5


def audit_release(seed: int, actual_noise: float) -> tuple[float, float, float]:
    """(one-run lower bound, canary estimate, ceiling) for one release."""
    dirs = canary_directions(N_CANARIES, DIMENSION, seed)
    included = canary_inclusion(N_CANARIES, seed)
    release = gaussian_sum_release(
        dirs,
        included,
        clip_norm=0.5,
        noise_multiplier=actual_noise,
        generator=torch_generator(seed, 0, -1, "test.noise"),
    )
    scores = canary_cosines(release, dirs).numpy()
    mask = included.numpy()
    bound = one_run_audit(scores, mask, delta=DELTA)
    estimate = canary_epsilon_estimate(scores[mask], delta=DELTA, dimension=DIMENSION)
    return bound.epsilon, estimate.epsilon, float(bound.details["ceiling"])


@pytest.mark.parametrize("noise_multiplier", [1.0, 2.0])
def test_lower_bound_stays_below_the_accountant(noise_multiplier: float) -> None:
    upper = dp_accounting.get_epsilon_gaussian(noise_multiplier, DELTA)
    for seed in range(3):
        lower, _, _ = audit_release(seed, noise_multiplier)
        assert 0.0 < lower < upper


def test_broken_mechanism_is_caught() -> None:
    # The ledger claims one Gaussian round at σ = 2 (ε ≈ 1.99) but the noise is off.
    claimed = dp_accounting.get_epsilon_gaussian(2.0, DELTA)
    assert claimed == pytest.approx(1.99, abs=0.01)
    lower, estimate, ceiling = audit_release(0, actual_noise=0.0)
    assert claimed < lower <= ceiling <= max_certifiable_epsilon(N_CANARIES, delta=DELTA)
    assert estimate > 5.0  # without DP the canaries are obvious


def test_audit_is_deterministic() -> None:
    assert audit_release(4, 1.0) == audit_release(4, 1.0)
