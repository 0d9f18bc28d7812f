"""Privacy-random-variable accountant: a wrapper around Opacus' PRV accountant.

Poisson-subsampled Gaussian events only (Opacus' PRV implements no other mechanism); anything
else is refused with the reason. ε(δ) is Opacus' upper bound (estimate + ``eps_error``); δ(ε) is
bounded the same way: δ̂(ε − eps_error) + delta_error (Gopi et al. 2021, Theorem 5.5).

References
----------
Gopi, Lee, Wutschitz. "Numerical Composition of Differential Privacy." NeurIPS 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from fedguard.errors import ConfigError
from fedguard.privacy.accountants.base import Accountant, UnsupportedEventError
from fedguard.privacy.accountants.pld import gaussian_steps
from fedguard.privacy.events import PrivacyEvent


@dataclass(frozen=True)
class PrvAccountant(Accountant):
    """Opacus' PRV accountant with an explicit memory guard.

    ``eps_error``: additive error of ε (Opacus' default 0.01); ``delta_error``: error of δ
    (``None``: δ/1000 for ε(δ), 1e-10 for δ(ε)); ``max_domain_points``: the discretisation grid
    is refused (with the reason) beyond this many points (8 bytes each, several arrays).
    """

    name: ClassVar[str] = "prv"
    eps_error: float = 0.01
    delta_error: float | None = None
    max_domain_points: int = 20_000_000

    def __post_init__(self) -> None:
        if not (isinstance(self.eps_error, int | float) and 0 < self.eps_error < 1):
            raise ConfigError(f"eps_error must be a number in (0, 1) (got {self.eps_error!r}).")
        if self.delta_error is not None and not (0 < self.delta_error < 1):
            raise ConfigError(
                f"delta_error must be a number in (0, 1) or null (got {self.delta_error!r})."
            )
        if not (isinstance(self.max_domain_points, int) and self.max_domain_points >= 1000):
            raise ConfigError("max_domain_points must be an integer >= 1000.")

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "library": "opacus",
            "version": metadata.version("opacus"),
            "eps_error": self.eps_error,
            "delta_error": self.delta_error if self.delta_error is not None else "delta/1000",
            "bound": "upper",
        }

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        steps, reason = gaussian_steps(event, "the PRV accountant")
        return (True, "") if steps else (False, reason)

    def _dprv(self, event: PrivacyEvent, delta_error: float) -> Any:
        from opacus.accountants.analysis.prv import (
            Domain,
            PoissonSubsampledGaussianPRV,
            TruncatedPrivacyRandomVariable,
            compose_heterogeneous,
            compute_safe_domain_size,
            discretize,
        )

        steps, _ = gaussian_steps(event, "the PRV accountant")
        prvs = [PoissonSubsampledGaussianPRV(rate, sigma) for rate, sigma, _ in steps]
        counts = [count for _, _, count in steps]
        with np.errstate(divide="ignore", invalid="ignore"):
            half_width = compute_safe_domain_size(
                prvs=prvs,
                max_self_compositions=counts,
                eps_error=self.eps_error,
                delta_error=delta_error,
            )
            mesh = self.eps_error / math.sqrt(sum(counts) * math.log(12 / delta_error) / 2)
            points = 2 * half_width / mesh
            if points > self.max_domain_points:
                raise UnsupportedEventError(
                    f"the PRV accountant would need {points:.3g} grid points (about "
                    f"{points * 8 * 6 / 1e9:.1f} GB); raise eps_error or use the pld accountant."
                )
            domain = Domain.create_aligned(-half_width, half_width, mesh)
            tprvs = [
                TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max) for prv in prvs
            ]
            dprvs = [discretize(tprv, domain) for tprv in tprvs]
            return compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        delta_error = self.delta_error if self.delta_error is not None else delta / 1000
        dprv = self._dprv(event, delta_error)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            _, _, upper = dprv.compute_epsilon(delta, delta_error, self.eps_error)
        return max(0.0, float(upper))

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        delta_error = self.delta_error if self.delta_error is not None else 1e-10
        dprv = self._dprv(event, delta_error)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            estimate = float(dprv.compute_delta_estimate(max(0.0, epsilon - self.eps_error)))
        return estimate + delta_error
