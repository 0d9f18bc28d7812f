"""Noise calibration: the smallest noise multiplier that meets a target (ε, δ).

ε of a sampled Gaussian is decreasing in the noise multiplier, so a bracket is grown
geometrically and then bisected (in log space) until its ends are within ``rtol`` of each other;
the upper end — a multiplier whose ε is at most the target — is returned.
"""

from __future__ import annotations

import math

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import Accountant, get_accountant
from fedguard.privacy.accountants.base import check_delta
from fedguard.privacy.events import sampled_gaussian, sensitivity_in_clip_norms

_MIN_MULTIPLIER = 1e-3
_MAX_MULTIPLIER = 1e4


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    steps: int,
    sampling_rate: float = 1.0,
    scheme: str = "poisson",
    population: int | None = None,
    accountant: str | Accountant = "rdp",
    rtol: float = 1e-3,
) -> float:
    """Smallest noise multiplier z (to relative precision ``rtol``) such that ``steps``
    compositions of the sampled Gaussian (``sampling_rate``, z, ``scheme``) are
    (``target_epsilon``, ``delta``)-DP under ``accountant`` (a name or an instance).

    The returned z always satisfies the target (it is the feasible end of the final bracket).
    """
    if not (
        isinstance(target_epsilon, int | float)
        and math.isfinite(target_epsilon)
        and target_epsilon > 0
    ):
        raise ConfigError(f"target_epsilon must be a finite number > 0 (got {target_epsilon!r}).")
    delta = check_delta(delta)
    if not (isinstance(rtol, float) and 0 < rtol < 1):
        raise ConfigError(f"rtol must be a number in (0, 1) (got {rtol!r}).")
    acc = get_accountant(accountant) if isinstance(accountant, str) else accountant

    def epsilon(z: float) -> float:
        event = sampled_gaussian(sampling_rate, z, steps, scheme=scheme, population=population)
        return acc.epsilon(event, delta)

    hi = 1.0
    while epsilon(hi) > target_epsilon:
        hi *= 2.0
        if hi > _MAX_MULTIPLIER:
            raise ConfigError(
                f"target_epsilon {target_epsilon} is not reachable with a noise multiplier up to "
                f"{_MAX_MULTIPLIER:g}."
            )
    lo = hi / 2.0
    while epsilon(lo) <= target_epsilon:
        hi, lo = lo, lo / 2.0
        if lo < _MIN_MULTIPLIER:
            return hi
    while hi / lo - 1.0 > rtol:
        mid = math.sqrt(lo * hi)
        if epsilon(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def calibrate_clipped_sum_noise(
    target_epsilon: float,
    delta: float,
    steps: int,
    sampling_rate: float = 1.0,
    scheme: str = "poisson",
    population: int | None = None,
    accountant: str | Accountant = "rdp",
    rtol: float = 1e-3,
) -> float:
    """Like :func:`calibrate_noise_multiplier`, but the answer is noise std ÷ clip norm — the
    ``noise_multiplier`` of a run config — whatever the scheme's neighbouring relation.

    A fixed cohort is accounted under replace-one, where a clipped sum's sensitivity is twice the
    clip norm; the event-level multiplier is therefore doubled so that a config given this value
    adds exactly the noise the calibration assumed (not half of it).
    """
    z_event = calibrate_noise_multiplier(
        target_epsilon, delta, steps, sampling_rate, scheme, population, accountant, rtol
    )
    return z_event * sensitivity_in_clip_norms(scheme)


__all__ = ["calibrate_clipped_sum_noise", "calibrate_noise_multiplier"]
