"""dp-accounting's PLD of (Poisson-subsampled) Gaussian steps, with its memory predicted first.

dp-accounting builds one discretised privacy-loss distribution (PLD) per step kind on a grid of
spacing ``h`` (the value discretisation interval), self-composes it by FFT and composes the kinds.
Its arrays grow as (range of the privacy loss) / h; at q = 1, z = 0.5, T = 10⁴ the merged Gaussian
alone needs 4·10⁸ points and numpy raises ``MemoryError`` (3.27 GiB for the first array).

:func:`compose_gaussian_pld` makes the same calls as ``dp_accounting``'s ``PLDAccountant``, in the
same order (so the result is bit-for-bit the library's), but predicts each array's length before
it is allocated: a single step from its connect-the-dots loss bounds, a self-composition from the
same Chernoff bound dp-accounting truncates with. Beyond ``max_points`` it raises
:class:`GridTooLargeError` — an :class:`UnsupportedEventError`, the refusal type of the PRV
accountant's memory guard — with one sentence naming the setting and the memory.

References
----------
Koskela, Jälkö, Honkela. "Computing Tight Differential Privacy Guarantees Using FFT." AISTATS 2020.
Doroshenko, Ghazi, Kamath, Kumar, Manurangsi. "Connect the Dots: Tighter Discrete Approximations
of Privacy Loss Distributions." PETS 2022 (the discretisation and the truncation bounds used).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedguard.privacy.accountants.base import UnsupportedEventError

#: Bytes per grid point at the peak of a self-composition (complex FFT input, its power and
#: inverse, the real part and the rolled copy): 3 × 16 + 2 × 8.
BYTES_PER_POINT = 64
#: Bytes per grid point at the peak of building one step's PLD (connect-the-dots temporaries;
#: measured with dp-accounting 0.6.0: 171 bytes per point for a 1.35·10⁷-point Gaussian).
BYTES_PER_POINT_SINGLE = 170
#: dp-accounting's defaults, spelled out because the size prediction must use the same values.
_LOG_MASS_TRUNCATION = -50.0
_TAIL_MASS_TRUNCATION = 1e-15
_MAX_SPARSE_SIZE = 1000  # pld_pmf._MAX_PMF_SPARSE_SIZE
_DELTA_DIFF_TOLERANCE = 1e-12  # pld_pmf._DELTA_DIFF_TOLERANCE


class GridTooLargeError(UnsupportedEventError):
    """The discretised PLD would exceed the accountant's grid-point limit (memory guard)."""


def _describe(rate: float, sigma: float, count: int) -> str:
    return f"q = {rate:g}, noise multiplier {sigma:g}, {count} steps"


def _refuse(points: float, what: str, interval: float, per_point: int) -> GridTooLargeError:
    gigabytes = points * per_point / 1e9
    return GridTooLargeError(
        f"the PLD accountant would need {points:.3g} grid points (about {gigabytes:.1f} GB of "
        f"memory) for {what} at value_discretization_interval {interval:g}; raise the interval "
        "or use the rdp accountant."
    )


def _privacy_losses(rate: float, std: float, adjacency: Any) -> Any:
    from dp_accounting.pld import privacy_loss_mechanism as plm

    return plm.GaussianPrivacyLoss(
        std,
        sensitivity=1,
        pessimistic_estimate=True,
        log_mass_truncation_bound=_LOG_MASS_TRUNCATION,
        sampling_prob=rate,
        adjacency_type=adjacency,
    )


def _adjacencies(rate: float) -> list[Any]:
    from dp_accounting.pld import privacy_loss_mechanism as plm

    # q = 1: the REMOVE and ADD distributions coincide; dp-accounting keeps one.
    return [plm.AdjacencyType.REMOVE] + ([plm.AdjacencyType.ADD] if rate < 1 else [])


def _loss_grid(loss: Any, interval: float) -> tuple[int, int]:
    """dp-accounting's connect-the-dots grid: integer multiples of ``interval`` covering the
    losses between the truncation points."""
    bounds = loss.connect_dots_bounds()
    return (
        math.floor(bounds.epsilon_lower / interval),
        math.ceil(bounds.epsilon_upper / interval),
    )


def single_step_points(rate: float, sigma: float, interval: float) -> int:
    """Grid points of dp-accounting's connect-the-dots PLD of one (sampled) Gaussian step
    (the larger of its REMOVE and ADD distributions), computed without building it."""
    points = 0
    for adjacency in _adjacencies(rate):
        lower, upper = _loss_grid(_privacy_losses(rate, sigma, adjacency), interval)
        points = max(points, upper - lower + 1)
    return points


def _hockey_stick(loss: Any, rate: float, std: float, epsilons: np.ndarray) -> np.ndarray:
    """δ(ε) of one (sampled) Gaussian step for every ε of the grid, shape ``(n,)``.

    The same formulas as ``GaussianPrivacyLoss.get_delta_for_epsilon`` (δ = μ_upper_cdf(x) −
    e^ε μ_lower_cdf(x) at x = the inverse privacy loss of ε), with the inverse evaluated on the
    whole array instead of one Python call per point (that loop is 95% of dp-accounting's time).
    """
    from dp_accounting.pld import privacy_loss_mechanism as plm

    deltas = np.zeros_like(epsilons)
    variance = std**2
    if rate == 1.0:
        use = np.full(epsilons.shape, True)
        x = -0.5 - epsilons * variance
    else:
        log_a, log_minus_c = math.log(1 / rate), math.log(-(1 - 1 / rate))
        if loss.adjacency_type == plm.AdjacencyType.ADD:
            use = epsilons < -math.log1p(-rate)
            d = -epsilons[use] + log_a
            with np.errstate(divide="ignore"):
                unsampled = -(d + np.log1p(-np.exp(log_minus_c - d)))
            x = 1.0 + (-0.5 - unsampled * variance)
        else:
            use = epsilons > math.log1p(-rate)
            deltas[~use] = -np.expm1(epsilons[~use])
            d = epsilons[use] + log_a
            with np.errstate(divide="ignore"):
                unsampled = d + np.log1p(-np.exp(log_minus_c - d))
            x = -0.5 - unsampled * variance
    deltas[use] = loss.mu_upper_cdf(x) - np.exp(epsilons[use] + loss.mu_lower_log_cdf(x))
    return np.clip(deltas, 0, 1)


def gaussian_pld(rate: float, std: float, interval: float) -> Any:
    """dp-accounting's pessimistic connect-the-dots PLD of one Gaussian step of noise ``std``
    (sensitivity 1) on a Poisson sample of rate ``rate`` (add/remove), as
    ``privacy_loss_distribution.from_gaussian_mechanism`` builds it, vectorised."""
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    pmfs = []
    for adjacency in _adjacencies(rate):
        loss = _privacy_losses(rate, std, adjacency)
        lower, upper = _loss_grid(loss, interval)
        epsilons = np.arange(lower, upper + 1) * interval  # (n,)
        deltas = _hockey_stick(loss, rate, std, epsilons)
        pmfs.append(_connect_dots_pmf(interval, lower, upper, deltas))
    return pld_lib.PrivacyLossDistribution(*pmfs)


def _connect_dots_pmf(interval: float, lower: int, upper: int, deltas: np.ndarray) -> Any:
    """``pld_pmf.create_pmf_pessimistic_connect_dots_fixed_gap`` (Doroshenko et al. 2022,
    Algorithm 1) without its detour through a Python dict for dense pmfs."""
    from dp_accounting.pld import pld_pmf

    if upper - lower + 1 <= _MAX_SPARSE_SIZE:  # small: the library's own (sparse) pmf
        return pld_pmf.create_pmf_pessimistic_connect_dots_fixed_gap(interval, lower, upper, deltas)
    if np.any(np.diff(deltas) > _DELTA_DIFF_TOLERANCE):
        raise ValueError("deltas of the connect-the-dots PLD are not non-increasing.")
    deltas = np.minimum.accumulate(deltas)
    diffs = np.diff(deltas)
    probs = np.zeros_like(deltas)
    probs[0] = 1 - deltas[0] + diffs[0] / math.expm1(interval)
    probs[1:-1] = (diffs[1:] - diffs[:-1] * math.exp(interval)) / math.expm1(interval)
    probs[-1] = diffs[-1] / math.expm1(-interval)
    probs = np.maximum(0.0, probs)
    return pld_pmf.DensePLDPmf(interval, lower, probs, deltas[-1], True)


def _convolve_bounds(probs: np.ndarray, count: int) -> tuple[int, int]:
    """``common.compute_self_convolve_bounds`` (Chernoff bounds on the ``count``-fold sum's
    tails, the same 40 orders), its 40 log-MGFs computed in one pass."""
    n = probs.size
    orders = np.concatenate((np.arange(-20, 0), np.arange(1, 21))) / n  # (40,)
    upper_bound, lower_bound = (n - 1) * count, 0
    support = np.flatnonzero(probs > 0)
    index, log_probs = support.astype(np.float64), np.log(probs[support])
    for order in orders:
        exponent = index * order + log_probs
        top = exponent.max()
        log_mgf = top + math.log(np.exp(exponent - top).sum())
        bound = (count * log_mgf + math.log(2 / _TAIL_MASS_TRUNCATION)) / order
        if not math.isfinite(bound):
            continue
        if order > 0:
            upper_bound = min(upper_bound, math.ceil(bound))
        else:
            lower_bound = max(lower_bound, math.floor(bound))
    return lower_bound, upper_bound


def _self_compose_pmf(pmf: Any, count: int, max_points: int, what: str) -> Any:
    """``DensePLDPmf.self_compose(count)`` (FFT power, tails truncated at 1e-15), refused before
    the FFT is allocated when it would exceed ``max_points``."""
    from dp_accounting.pld import pld_pmf
    from scipy import fft

    probs = pmf._probs
    lower, upper = _convolve_bounds(probs, count)
    length = upper - lower + 1
    fast_len = fft.next_fast_len(max(length, probs.size))
    if fast_len > max_points:
        raise _refuse(fast_len, what, pmf._discretization, BYTES_PER_POINT)
    power = np.real(fft.ifft(fft.fft(probs, fast_len) ** count))
    out = np.roll(power, -lower)[:length]
    infinity = _TAIL_MASS_TRUNCATION - math.expm1(count * math.log1p(-pmf._infinity_mass))
    return pld_pmf.DensePLDPmf(
        pmf._discretization, pmf._lower_loss * count + lower, np.array(out), infinity, True
    )


def self_compose(pld: Any, count: int, max_points: int, what: str) -> Any:
    """``pld.self_compose(count)`` as dp-accounting computes it, with the memory guard."""
    from dp_accounting.pld import pld_pmf
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    remove, add = pld._pmf_remove, pld._pmf_add
    out = []
    for pmf in [remove] if add is remove else [remove, add]:
        dense = (
            isinstance(pmf, pld_pmf.DensePLDPmf) or pmf.size ** min(count, 20) > _MAX_SPARSE_SIZE
        )
        if not dense:
            out.append(pmf.self_compose(count))  # tiny: the library's sparse composition
            continue
        out.append(_self_compose_pmf(pmf.to_dense_pmf(), count, max_points, what))
    return pld_lib.PrivacyLossDistribution(*out)


def _pmf_epsilon(pmf: Any, delta: float) -> float:
    """``pmf.get_epsilon_for_delta(delta)`` of a dense PLD pmf, vectorised.

    dp-accounting walks the losses from the largest down in a Python loop, accumulating the
    mass above (μ_upper) and Σ e^(−loss)·p (μ_lower) and stopping at the first loss below
    ln((μ_upper − δ) / μ_lower); here both sums are cumulative sums (sequential, as the loop's
    additions) and the stopping index is the first that meets the same test.
    """
    probs = np.flip(pmf._probs)  # (n,) from the largest loss down
    n = probs.size
    losses = (pmf._lower_loss + n - 1 - np.arange(n)) * pmf._discretization  # (n,)
    infinity_mass = pmf._infinity_mass
    if infinity_mass > delta:
        return math.inf
    # the sums *before* adding loss k, for k = 0 … n (index n: after the whole array)
    upper = np.concatenate([[infinity_mass], infinity_mass + np.cumsum(probs)])  # (n + 1,)
    lower = np.concatenate([[0.0], np.cumsum(np.exp(-losses) * probs)])  # (n + 1,)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.log((upper[:-1] - delta) / lower[:-1])  # (n,)
    stop = (upper[:-1] > delta) & (lower[:-1] > 0) & (ratio >= losses)
    # the loop also returns max(0, loss) once μ_upper ≥ δ with μ_lower still exactly 0
    underflow = (upper[1:] >= delta) & (lower[1:] == 0)
    first_stop = int(np.argmax(stop)) if stop.any() else n
    first_underflow = int(np.argmax(underflow)) if underflow.any() else n
    if first_underflow < first_stop:
        return max(0.0, float(losses[first_underflow]))
    mass_upper, mass_lower = float(upper[first_stop]), float(lower[first_stop])
    if mass_upper <= mass_lower + delta:
        return 0.0
    return math.log((mass_upper - delta) / mass_lower)


def pld_epsilon(pld: Any, delta: float) -> float:
    """``pld.get_epsilon_for_delta(delta)`` (the larger of the REMOVE and ADD ε), vectorised."""
    pmfs = [pld._pmf_remove, pld._pmf_add]
    unique = pmfs[:1] if pmfs[1] is pmfs[0] else pmfs
    return max(_pmf_epsilon(pmf.to_dense_pmf(), delta) for pmf in unique)


def compose_gaussian_pld(
    steps: list[tuple[float, float, int]], interval: float, max_points: int
) -> Any:
    """dp-accounting's pessimistic PLD of ``steps`` = ``[(sampling_rate, noise_multiplier,
    count), ...]`` (add/remove), as ``PLDAccountant(interval)`` composes it.

    Raises :class:`GridTooLargeError` before allocating more than ``max_points`` grid points.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    pld = pld_lib.identity(value_discretization_interval=interval)
    for rate, sigma, count in steps:
        # PLDAccountant merges `count` unsampled Gaussian steps into one of std σ / √count
        # (exact); sampled steps are built once and self-composed.
        std = sigma / math.sqrt(count) if rate == 1 else sigma
        single = single_step_points(rate, std, interval)
        if single > max_points:
            raise _refuse(single, _describe(rate, sigma, count), interval, BYTES_PER_POINT_SINGLE)
        if rate == 1:
            part = gaussian_pld(1.0, std, interval)
        else:
            step = gaussian_pld(rate, std, interval)
            part = self_compose(step, count, max_points, _describe(rate, sigma, count))
        pld = pld.compose(part)
    return pld


__all__ = [
    "BYTES_PER_POINT",
    "BYTES_PER_POINT_SINGLE",
    "GridTooLargeError",
    "compose_gaussian_pld",
    "gaussian_pld",
    "pld_epsilon",
    "single_step_points",
]
