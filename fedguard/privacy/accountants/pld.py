"""Privacy-loss-distribution accountant: a wrapper around Google's ``dp_accounting`` PLD.

Supports Gaussian and Poisson-subsampled Gaussian events (also a composition of Gaussians on the
same sample, reduced to one Gaussian) and their compositions. dp-accounting's PLD has no sampling
without replacement, so fixed-cohort events are refused; RQM and discrete noise are RDP-only.

References
----------
Koskela, Jälkö, Honkela. "Computing Tight Differential Privacy Guarantees Using FFT." AISTATS 2020.
Doroshenko, Ghazi, Kamath, Kumar, Manurangsi. "Connect the Dots: Tighter Discrete Approximations
of Privacy Loss Distributions." PETS 2022 (the discretisation dp-accounting uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from fedguard.errors import ConfigError
from fedguard.privacy.accountants.base import Accountant
from fedguard.privacy.accountants.pld_grid import compose_gaussian_pld
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


@dataclass(frozen=True)
class PldAccountant(Accountant):
    """ε(δ) and δ(ε) from dp-accounting's PLD accountant (pessimistic discretisation).

    ``max_grid_points``: a PLD whose discretisation grid would exceed this many points
    (:data:`~fedguard.privacy.accountants.pld_grid.BYTES_PER_POINT` bytes each at the peak) is
    refused with the reason, before anything is allocated — the same guard as the PRV accountant's.
    """

    name: ClassVar[str] = "pld"
    value_discretization_interval: float = 1e-4
    max_grid_points: int = 20_000_000

    def __post_init__(self) -> None:
        v = self.value_discretization_interval
        if not (isinstance(v, int | float) and 0 < v < 1):
            raise ConfigError(
                f"value_discretization_interval must be a number in (0, 1) (got {v!r})."
            )
        if not (isinstance(self.max_grid_points, int) and self.max_grid_points >= 1000):
            raise ConfigError(
                f"max_grid_points must be an integer >= 1000 (got {self.max_grid_points!r})."
            )

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "library": "dp-accounting",
            "version": metadata.version("dp-accounting"),
            "value_discretization_interval": self.value_discretization_interval,
            "pessimistic_estimate": True,
            "max_grid_points": self.max_grid_points,
        }

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        steps, reason = gaussian_steps(event, "the PLD accountant")
        return (True, "") if steps else (False, reason)

    def _pld(self, event: PrivacyEvent) -> Any:
        steps, _ = gaussian_steps(event, "the PLD accountant")
        return compose_gaussian_pld(steps, self.value_discretization_interval, self.max_grid_points)

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        return float(self._pld(event).get_epsilon_for_delta(delta))

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        return float(self._pld(event).get_delta_for_epsilon(epsilon))
