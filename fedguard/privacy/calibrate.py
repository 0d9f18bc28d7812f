"""Noise calibration: the smallest noise multiplier that meets a target (ε, δ).

ε of a sampled Gaussian is decreasing in the noise multiplier z. The search starts from the
cheapest answer there is — a closed form, instant: the central-limit μ-GDP of the Poisson-
subsampled Gaussian, μ = q √(T (e^(1/z²) − 1)) (Dong, Roth & Su 2022, Corollary 5.4; exact
μ = √T / z without sampling), inverted at the target through the analytic Gaussian's ε(μ, δ). The
requested accountant then only confirms a bracket around that guess (a step of 5%, squared until
the sign changes) and narrows it by regula falsi with the Illinois modification in log z, each
step kept inside the bracket, until the bracket's ends are within ``rtol`` of each other. The
upper end — a multiplier the accountant itself certifies to meet the target — is returned. About
6 evaluations of the accountant instead of 13–17 for doubling and bisection.

References
----------
Dong, Roth, Su. "Gaussian Differential Privacy." JRSS-B 2022 (CLT for the subsampled Gaussian).
Balle, Wang. "Improving the Gaussian Mechanism for Differential Privacy." ICML 2018 (ε(μ, δ)).
Dowell, Jarratt. "A modified regula falsi method for computing the root of an equation." BIT 1971
(the Illinois method).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import optimize

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import Accountant, get_accountant
from fedguard.privacy.accountants.analytic import gaussian_epsilon
from fedguard.privacy.accountants.base import check_delta
from fedguard.privacy.events import sampled_gaussian, sensitivity_in_clip_norms

_MIN_MULTIPLIER = 1e-3
_MAX_MULTIPLIER = 1e4
_FIRST_STEP = 1.05  # bracket step around the closed-form guess, squared after each miss


def clt_guess(target_epsilon: float, delta: float, steps: int, sampling_rate: float) -> float:
    """The noise multiplier whose central-limit μ-GDP meets (target_epsilon, delta): a starting
    point only (the accountant decides), clipped to the searched range."""
    hi = 1.0
    while gaussian_epsilon(hi, delta) < target_epsilon and hi < 1e6:
        hi *= 2.0
    mu = optimize.brentq(lambda m: gaussian_epsilon(m, delta) - target_epsilon, 1e-12, hi)
    if sampling_rate == 1.0:
        z = math.sqrt(steps) / mu
    else:
        z = 1.0 / math.sqrt(math.log1p(mu**2 / (sampling_rate**2 * steps)))
    return min(max(z, 2 * _MIN_MULTIPLIER), _MAX_MULTIPLIER / 2)


def _narrow(
    excess: Callable[[float], float], lo: float, hi: float, f_lo: float, f_hi: float, rtol: float
) -> float:
    """Illinois regula falsi in x = ln z on a bracket with excess(lo) > 0 ≥ excess(hi); returns
    the feasible end once hi / lo − 1 ≤ rtol."""
    tolerance = math.log1p(rtol)
    x_lo, x_hi = math.log(lo), math.log(hi)
    last_side = 0
    while x_hi - x_lo > tolerance:
        width = x_hi - x_lo
        x = x_hi - f_hi * width / (f_hi - f_lo)
        margin = min(0.25 * width, 0.45 * tolerance)  # progress at each step, on either side
        x = min(max(x, x_lo + margin), x_hi - margin)
        f = excess(math.exp(x))
        if f > 0:
            x_lo, f_lo = x, f
            if last_side == -1:
                f_hi /= 2  # Illinois: the other end has not moved twice in a row
            last_side = -1
        else:
            x_hi, f_hi = x, f
            if last_side == 1:
                f_lo /= 2
            last_side = 1
    return math.exp(x_hi)


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

    The returned z always satisfies the target (it is the feasible end of the final bracket,
    evaluated by ``accountant``).
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
    sampled_gaussian(sampling_rate, 1.0, steps, scheme=scheme, population=population)  # validates

    def excess(z: float) -> float:
        event = sampled_gaussian(sampling_rate, z, steps, scheme=scheme, population=population)
        return acc.epsilon(event, delta) - target_epsilon

    z = clt_guess(target_epsilon, delta, steps, sampling_rate)
    f = excess(z)
    factor = _FIRST_STEP
    if f <= 0:  # feasible: step down until infeasible
        hi, f_hi = z, f
        while True:
            lo = hi / factor
            if lo < _MIN_MULTIPLIER:
                return hi
            f_lo = excess(lo)
            if f_lo > 0:
                break
            hi, f_hi, factor = lo, f_lo, factor**2
    else:  # infeasible: step up until feasible
        lo, f_lo = z, f
        while True:
            hi = lo * factor
            if hi > _MAX_MULTIPLIER:
                raise ConfigError(
                    f"target_epsilon {target_epsilon} is not reachable with a noise multiplier "
                    f"up to {_MAX_MULTIPLIER:g}."
                )
            f_hi = excess(hi)
            if f_hi <= 0:
                break
            lo, f_lo, factor = hi, f_hi, factor**2
    return _narrow(excess, lo, hi, f_lo, f_hi, rtol)


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


__all__ = ["calibrate_clipped_sum_noise", "calibrate_noise_multiplier", "clt_guess"]
