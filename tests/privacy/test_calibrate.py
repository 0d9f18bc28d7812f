from __future__ import annotations

import pytest

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import PldAccountant, RdpAccountant
from fedguard.privacy.calibrate import calibrate_noise_multiplier
from fedguard.privacy.events import sampled_gaussian


def test_recovers_the_reference_multiplier() -> None:
    # q = 0.01, z = 1.1, T = 1000 has RDP ε = 1.71177 at δ = 1e-5 (ALGORITHMS.md)
    z = calibrate_noise_multiplier(1.7118, 1e-5, steps=1000, sampling_rate=0.01, rtol=1e-4)
    assert z == pytest.approx(1.1, rel=2e-4)
    acc = RdpAccountant()
    assert acc.epsilon(sampled_gaussian(0.01, z, 1000), 1e-5) <= 1.7118
    assert acc.epsilon(sampled_gaussian(0.01, z * (1 - 2e-4), 1000), 1e-5) > 1.7118


def test_accountant_and_scheme_are_honoured() -> None:
    rdp = calibrate_noise_multiplier(2.0, 1e-5, steps=100, sampling_rate=0.05, rtol=1e-2)
    coarse = PldAccountant(value_discretization_interval=1e-3)
    pld = calibrate_noise_multiplier(
        2.0, 1e-5, steps=100, sampling_rate=0.05, accountant=coarse, rtol=1e-2
    )
    fixed = calibrate_noise_multiplier(
        2.0, 1e-5, steps=100, sampling_rate=0.05, scheme="fixed", population=1000, rtol=1e-2
    )
    assert pld < rdp < fixed  # PLD is tighter; a fixed cohort (replace-one) needs more noise
    assert coarse.epsilon(sampled_gaussian(0.05, pld, 100), 1e-5) <= 2.0
    full = calibrate_noise_multiplier(4.3772, 1e-5, steps=1, accountant="analytic", rtol=1e-5)
    assert full == pytest.approx(1.0, rel=1e-4)


def test_bad_targets() -> None:
    with pytest.raises(ConfigError, match="target_epsilon"):
        calibrate_noise_multiplier(0.0, 1e-5, steps=10)
    with pytest.raises(ConfigError, match="delta"):
        calibrate_noise_multiplier(1.0, 1.0, steps=10)
    with pytest.raises(ConfigError, match="rate"):
        calibrate_noise_multiplier(1.0, 1e-5, steps=10, sampling_rate=1.5)
    with pytest.raises(ConfigError, match="accountant"):
        calibrate_noise_multiplier(1.0, 1e-5, steps=10, accountant="nope")
