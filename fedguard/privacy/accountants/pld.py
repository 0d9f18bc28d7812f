"""Privacy-loss-distribution accountant: Google's ``dp_accounting`` PLD, its grid chosen for speed.

Supports Gaussian and Poisson-subsampled Gaussian events (also a composition of Gaussians on the
same sample, reduced to one Gaussian) and their compositions. dp-accounting's PLD has no sampling
without replacement, so fixed-cohort events are refused; RQM and discrete noise are RDP-only.

Two modes (``value_discretization_interval``):

* a number — dp-accounting's ``PLDAccountant`` on that fixed grid, bit for bit up to float
  rounding (1e-4 is the library's default, the reference of the test fixtures);
* ``None`` (the default) — answers in well under a second without losing accuracy:

  - unsampled Gaussian steps compose into one Gaussian of μ = √(Σ count / z²) (exact); an event
    made only of them is answered by the analytic Gaussian's tight ε(δ) (Balle & Wang 2018), which
    every fixed-grid answer approaches from above;
  - otherwise the grid is refined from 1e-2 by factors of √10 down to at most the library's 1e-4,
    and stops as soon as two successive ε differ by at most ``relative_precision`` × ε. Every grid
    gives a pessimistic (valid upper) bound, and the discretisation error shrinks at least
    linearly in the interval, so the answer is within about that difference of the converged
    value. Where ε is large (10⁴ steps) 1e-2 already suffices; small ε refines to 1e-4.

Both modes predict the grid's size before dp-accounting allocates it and refuse (one sentence,
:class:`~fedguard.privacy.accountants.pld_grid.GridTooLargeError`) beyond ``max_grid_points``.

References
----------
Balle, Wang. "Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration
and Optimal Denoising." ICML 2018 (the closed form for unsampled Gaussians).
Dong, Roth, Su. "Gaussian Differential Privacy." JRSS-B 2022 (Corollary 2.13: composition).
Koskela, Jälkö, Honkela. "Computing Tight Differential Privacy Guarantees Using FFT." AISTATS 2020.
Doroshenko, Ghazi, Kamath, Kumar, Manurangsi. "Connect the Dots: Tighter Discrete Approximations
of Privacy Loss Distributions." PETS 2022 (the discretisation dp-accounting uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from fedguard.errors import ConfigError
from fedguard.privacy.accountants.analytic import gaussian_delta, gaussian_epsilon
from fedguard.privacy.accountants.base import Accountant
from fedguard.privacy.accountants.pld_grid import (
    GridTooLargeError,
    compose_gaussian_pld,
    pld_epsilon,
)
from fedguard.privacy.events import (
    Gaussian,
    PrivacyEvent,
    Sampled,
    effective_gaussian_multiplier,
    leaf_counts,
)


def gaussian_steps(
    event: PrivacyEvent, accountant: str
) -> tuple[list[tuple[float, float, int]], str]:
    """``[(sampling_rate, noise_multiplier, count), ...]`` for an event made only of (Poisson-
    sampled) Gaussians, or ``([], reason)`` naming the first unsupported part."""
    steps: list[tuple[float, float, int]] = []
    for leaf, count in leaf_counts(event).items():
        if isinstance(leaf, Gaussian):
            steps.append((1.0, leaf.noise_multiplier, count))
            continue
        if isinstance(leaf, Sampled):
            sigma = effective_gaussian_multiplier(leaf.event)
            if sigma is None:
                return [], (
                    f"{accountant} supports only sampled Gaussian events (found "
                    f"{type(leaf.event).__name__} inside a sampled event); use the rdp accountant."
                )
            if leaf.scheme != "poisson" and leaf.rate < 1:
                return [], (
                    f"{accountant} does not support sampling without replacement (fixed cohorts, "
                    "replace-one); use the rdp accountant."
                )
            steps.append((leaf.rate, sigma, count))
            continue
        return [], (
            f"{accountant} supports only Poisson-subsampled Gaussian events (found "
            f"{type(leaf).__name__}); use the rdp accountant."
        )
    return steps, ""


#: The refinement of the adaptive grid: 1e-2, 10^-2.5, …, 1e-4 (the library's default, finest).
ADAPTIVE_INTERVALS: tuple[float, ...] = (1e-2, 10**-2.5, 1e-3, 10**-3.5, 1e-4)


def merge_unsampled(
    steps: list[tuple[float, float, int]],
) -> tuple[list[tuple[float, float, int]], float]:
    """The sampled steps, and μ = √(Σ count / z²) of all unsampled ones (0 if none): Gaussian
    releases on the same data compose into one Gaussian exactly (Dong, Roth & Su 2022)."""
    sampled = [(q, z, n) for q, z, n in steps if q < 1]
    mu_squared = sum(n / z**2 for q, z, n in steps if q == 1)
    return sampled, math.sqrt(mu_squared)


@dataclass(frozen=True)
class PldAccountant(Accountant):
    """ε(δ) and δ(ε) from dp-accounting's PLD (pessimistic connect-the-dots discretisation).

    ``value_discretization_interval``: ``None`` (default) for the closed form / adaptive grid of
    the module docstring, or a fixed grid (1e-4 = dp-accounting's default); ``relative_precision``:
    the adaptive grid's stopping rule; ``max_grid_points``: a PLD whose grid would exceed this
    many points (:data:`~fedguard.privacy.accountants.pld_grid.BYTES_PER_POINT` bytes each at the
    peak) is refused with the reason, before anything is allocated — the same guard as the PRV
    accountant's. The adaptive grid stops refining at the finest grid that fits.
    """

    name: ClassVar[str] = "pld"
    value_discretization_interval: float | None = None
    relative_precision: float = 1e-3
    max_grid_points: int = 20_000_000

    def __post_init__(self) -> None:
        v = self.value_discretization_interval
        if v is not None and not (
            isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1
        ):
            raise ConfigError(
                f"value_discretization_interval must be a number in (0, 1) or null (got {v!r})."
            )
        r = self.relative_precision
        if not (isinstance(r, int | float) and not isinstance(r, bool) and 0 < r < 0.1):
            raise ConfigError(f"relative_precision must be a number in (0, 0.1) (got {r!r}).")
        if not (isinstance(self.max_grid_points, int) and self.max_grid_points >= 1000):
            raise ConfigError(
                f"max_grid_points must be an integer >= 1000 (got {self.max_grid_points!r})."
            )

    def settings(self) -> dict[str, Any]:
        interval = self.value_discretization_interval
        return {
            "name": self.name,
            "library": "dp-accounting",
            "version": metadata.version("dp-accounting"),
            "value_discretization_interval": "adaptive" if interval is None else interval,
            "relative_precision": self.relative_precision if interval is None else None,
            "unsampled_gaussians": "closed form" if interval is None else "grid",
            "pessimistic_estimate": True,
            "max_grid_points": self.max_grid_points,
        }

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        steps, reason = gaussian_steps(event, "the PLD accountant")
        return (True, "") if steps else (False, reason)

    def _pld(self, steps: list[tuple[float, float, int]], interval: float) -> Any:
        return compose_gaussian_pld(steps, interval, self.max_grid_points)

    def _answer(
        self,
        event: PrivacyEvent,
        closed_form: Callable[[float], float],
        of_pld: Callable[[Any], float],
    ) -> float:
        """``of_pld`` of the event's PLD on the fixed grid, or (default) ``closed_form(μ)`` of an
        event of unsampled Gaussians only, or ``of_pld`` on the refining grid."""
        steps, _ = gaussian_steps(event, "the PLD accountant")
        if self.value_discretization_interval is not None:
            return of_pld(self._pld(steps, self.value_discretization_interval))
        sampled, mu = merge_unsampled(steps)
        if not sampled:
            return closed_form(mu)
        steps = sampled + ([(1.0, 1.0 / mu, 1)] if mu > 0 else [])
        previous = math.nan
        for interval in ADAPTIVE_INTERVALS:
            try:
                current = of_pld(self._pld(steps, interval))
            except GridTooLargeError:
                if math.isnan(previous):
                    raise
                return previous  # the finest grid that fits: still a valid upper bound
            close = abs(current - previous) <= self.relative_precision * abs(current)
            if current == previous or close:
                return current
            previous = current
        return previous

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        return self._answer(
            event, lambda mu: gaussian_epsilon(mu, delta), lambda pld: pld_epsilon(pld, delta)
        )

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        return self._answer(
            event,
            lambda mu: gaussian_delta(mu, epsilon),
            lambda pld: float(pld.get_delta_for_epsilon(epsilon)),
        )
