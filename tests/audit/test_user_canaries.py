"""User-level canaries spread over silos (issue 22 item 2): the one-run lower bound stays below
ULDP-AVG's claimed user-level ε, and exceeds a claimed ε ≤ 2 when the noise is switched off or
the cross-silo weights are missing."""

from __future__ import annotations

import math

import pytest

from fedguard.audit.user_canaries import UserCanaryDesign, user_canary_audit, user_canary_release
from fedguard.errors import ConfigError
from fedguard.privacy.accountants.analytic import gaussian_epsilon

#: ε(δ = 1e-5) of one Gaussian release with z = 1.9938 is 2.000
CLAIM_TWO = 1.9938


def test_claim_is_two() -> None:
    assert gaussian_epsilon(1 / CLAIM_TWO, 1e-5) == pytest.approx(2.0, abs=1e-3)


@pytest.mark.parametrize(
    "design",
    [
        UserCanaryDesign(noise_multiplier=CLAIM_TWO),
        UserCanaryDesign(noise_multiplier=1.0, rounds=5, user_sampling_rate=0.5, seed=1),
    ],
)
def test_correct_mechanism_stays_below_its_claim(design: UserCanaryDesign) -> None:
    result = user_canary_audit(design)
    assert 0.0 <= result["epsilon_lower"] < result["epsilon_upper"]
    assert result["lower_exceeds_upper"] is False


def test_noise_switched_off_is_caught() -> None:
    design = UserCanaryDesign(noise_multiplier=CLAIM_TWO, actual_noise_multiplier=0.0)
    result = user_canary_audit(design)
    assert result["epsilon_upper"] == pytest.approx(2.0, abs=1e-3)
    assert result["epsilon_lower"] > 2.0 and result["lower_exceeds_upper"] is True


def test_missing_cross_silo_weights_are_caught() -> None:
    """Each silo bounding only its own copy (w = 1): a user in 5 silos moves the sum by 5C."""
    design = UserCanaryDesign(
        noise_multiplier=CLAIM_TWO, n_silos=5, silos_per_canary=5, cross_silo_weights=False
    )
    assert user_canary_audit(design)["lower_exceeds_upper"] is True


def test_each_canary_contributes_at_most_the_clip_norm_in_total() -> None:
    """Without noise and with every canary in: the release is Σ_j C·c_j exactly (each canary
    clipped in each silo, weights summing to 1 across its silos)."""
    design = UserCanaryDesign(
        n_canaries=20,
        dimension=50,
        noise_multiplier=1.0,
        actual_noise_multiplier=0.0,
        clip_norm=0.7,
    )
    released, directions, included = user_canary_release(design)
    unit = directions[included] / directions[included].norm(dim=1, keepdim=True)  # float32 draws
    expected = 0.7 * unit.sum(0)
    assert float((released - expected).abs().max()) < 1e-12
    assert math.isclose(float(directions[0].norm()), 1.0, rel_tol=1e-6)


def test_bad_design_names_the_field() -> None:
    with pytest.raises(ConfigError, match="silos_per_canary"):
        UserCanaryDesign(n_silos=2, silos_per_canary=3)
