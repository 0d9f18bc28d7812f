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


def single_step_points(rate: float, sigma: float, interval: float) -> int:
    """Grid points of dp-accounting's connect-the-dots PLD of one (sampled) Gaussian step
    (the larger of its REMOVE and ADD distributions), computed without building it."""
    from dp_accounting.pld import privacy_loss_mechanism as plm

    adjacencies = [plm.AdjacencyType.REMOVE]
    if rate < 1:
        adjacencies.append(plm.AdjacencyType.ADD)
    points = 0
    for adjacency in adjacencies:
        loss = plm.GaussianPrivacyLoss(
            sigma,
            sensitivity=1,
            pessimistic_estimate=True,
            log_mass_truncation_bound=_LOG_MASS_TRUNCATION,
            sampling_prob=rate,
            adjacency_type=adjacency,
        )
        bounds = loss.connect_dots_bounds()
        upper = math.ceil(bounds.epsilon_upper / interval)
        lower = math.floor(bounds.epsilon_lower / interval)
        points = max(points, upper - lower + 1)
    return points


def _composed_points(pld: Any, count: int) -> int:
    """Length of the FFT dp-accounting will allocate to self-compose ``pld`` ``count`` times."""
    from dp_accounting.pld import common
    from scipy import fft

    points = 0
    pmfs = [pld._pmf_remove, pld._pmf_add]  # sizes only, nothing is changed
    for pmf in pmfs[:1] if pmfs[1] is pmfs[0] else pmfs:
        dense = pmf.to_dense_pmf()
        probs = dense._probs
        lower, upper = common.compute_self_convolve_bounds(probs, count, _TAIL_MASS_TRUNCATION)
        points = max(points, fft.next_fast_len(max(upper - lower + 1, len(probs))))
    return points


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
            part = pld_lib.from_gaussian_mechanism(
                standard_deviation=std, value_discretization_interval=interval
            )
        else:
            step = pld_lib.from_gaussian_mechanism(
                standard_deviation=std, value_discretization_interval=interval, sampling_prob=rate
            )
            composed = _composed_points(step, count)
            if composed > max_points:
                raise _refuse(composed, _describe(rate, sigma, count), interval, BYTES_PER_POINT)
            part = step.self_compose(count)
        pld = pld.compose(part)
    return pld


__all__ = [
    "BYTES_PER_POINT",
    "BYTES_PER_POINT_SINGLE",
    "GridTooLargeError",
    "compose_gaussian_pld",
    "single_step_points",
]
