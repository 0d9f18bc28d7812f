"""Privacy-random-variable accountant: Opacus' PRV accountant, or its algorithm in fedguard.

Poisson-subsampled Gaussian events only (Opacus' PRV implements no other mechanism); anything
else is refused with the reason. ε(δ) is Opacus' upper bound (estimate + ``eps_error``); δ(ε) is
bounded the same way: δ̂(ε − eps_error) + delta_error (Gopi et al. 2021, Theorem 5.5).

``eps_error`` a number: Opacus as configured (0.01 is its default, the reference of the test
fixtures). ``eps_error=None`` (the default) answers in well under a second without losing
accuracy:

* an event made only of unsampled Gaussians is one Gaussian of μ = √(Σ count / z²) and gets the
  analytic Gaussian's exact ε(δ) / δ(ε) (Balle & Wang 2018), which Opacus' bound approaches
  from above; unsampled steps inside a mixed event are merged into that one Gaussian;
* the additive error is relative: ``max(0.01, relative_precision × ε̂)`` with ε̂ the RDP
  accountant's ε (an upper bound, instant) — Opacus' grid has ∝ 1 / eps_error points, so at
  ε ≈ 200 (q = 0.1, z = 0.8, T = 10⁴) it is 40× smaller for a change of ε of about 0.2 %
  (``relative_precision`` 2e-3, a fifth of the 1 % accuracy goal);
* the grid is widened to a size the FFT factors quickly (a wider domain is still safe);
* the safe domain (Opacus' ``compute_safe_domain_size``) is computed from fedguard's cached,
  vectorised RDP curves — the same half-width, without Opacus' per-call Python RDP;
* the discretisation and composition run in :mod:`~fedguard.privacy.accountants.prv_kernel`
  (numpy, the same algorithm and grid; Opacus' ε to 1e-7 relative): importing Opacus' PRV
  module runs Opacus' package ``__init__`` (torch, its privacy engine), 1.7–2.8 s that made a
  cold ``calibrate`` with PRV take over 2 s for 0.3 s of accounting.

References
----------
Gopi, Lee, Wutschitz. "Numerical Composition of Differential Privacy." NeurIPS 2021.
Balle, Wang. "Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration
and Optimal Denoising." ICML 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from fedguard.errors import ConfigError
from fedguard.privacy.accountants import prv_kernel
from fedguard.privacy.accountants.analytic import gaussian_delta, gaussian_epsilon
from fedguard.privacy.accountants.base import Accountant, UnsupportedEventError
from fedguard.privacy.accountants.pld import gaussian_steps, merge_unsampled
from fedguard.privacy.accountants.rdp import RdpAccountant, _leaf_rdp, rdp_to_epsilon
from fedguard.privacy.events import Gaussian, PrivacyEvent, Sampled


def _fast_half_width(half_width: float, mesh: float) -> float:
    """The half-width, grown to the next grid whose size (2K + 2 points, as Opacus aligns it)
    scipy's FFT factors quickly (5-smooth): a wider domain is still safe, and an awkward size
    (large prime factors) makes the composition's FFT 2–7× slower."""
    from scipy import fft

    size = 2 * math.ceil(half_width / mesh) + 2
    fast = fft.next_fast_len(size, real=True)
    while fast % 2:
        fast = fft.next_fast_len(fast + 1, real=True)
    return (fast // 2 - 1) * mesh


def safe_half_width(
    steps: list[tuple[float, float, int]], eps_error: float, delta_error: float
) -> float:
    """Half-width of a domain that truncates at most ``delta_error`` of privacy-loss mass:
    Opacus' ``compute_safe_domain_size`` (Gopi et al. 2021, Remark 5.6, as their code implements
    it) — the largest of the composition's RDP ε at δ_err/4 and every single step's RDP ε at
    δ_err/(8T), plus 3 — with fedguard's RDP accountant instead of Opacus': its per-order curves
    are cached per step (the ε estimate just computed them) and vectorised, where Opacus
    recomputes them in Python on every call (a quarter of a PRV call's time). Its order grid is a
    superset of Opacus', so each ε is at most Opacus' and still an RDP upper bound on the loss's
    tail, which is all the truncation argument uses."""
    orders = RdpAccountant().orders
    total_steps = sum(count for _, _, count in steps)
    per_step = [_leaf_rdp(Sampled(q, Gaussian(z)), orders) for q, z, _ in steps]
    composed = sum(count * curve for (_, _, count), curve in zip(steps, per_step, strict=True))
    largest = rdp_to_epsilon(orders, composed, delta_error / 4)[0]
    for curve in per_step:
        largest = max(largest, rdp_to_epsilon(orders, curve, delta_error / (8 * total_steps))[0])
    return max(largest, eps_error) + 3


#: Opacus' default additive error of ε (``PRVAccountant.get_epsilon(eps_error=0.01)``).
LIBRARY_EPS_ERROR = 0.01


@dataclass(frozen=True)
class PrvAccountant(Accountant):
    """Opacus' PRV accountant with an explicit memory guard.

    ``eps_error``: additive error of ε (``None``: the closed form / relative error of the module
    docstring; Opacus' default is 0.01); ``relative_precision``: the relative error used when
    ``eps_error`` is ``None``; ``delta_error``: error of δ (``None``: δ/1000 for ε(δ), 1e-10 for
    δ(ε)); ``max_domain_points``: the discretisation grid is refused (with the reason) beyond
    this many points (8 bytes each, several arrays).
    """

    name: ClassVar[str] = "prv"
    eps_error: float | None = None
    relative_precision: float = 2e-3
    delta_error: float | None = None
    max_domain_points: int = 20_000_000

    def __post_init__(self) -> None:
        e = self.eps_error
        if e is not None and not (isinstance(e, int | float) and 0 < e < 1):
            raise ConfigError(f"eps_error must be a number in (0, 1) or null (got {e!r}).")
        r = self.relative_precision
        if not (isinstance(r, int | float) and not isinstance(r, bool) and 0 < r < 0.1):
            raise ConfigError(f"relative_precision must be a number in (0, 0.1) (got {r!r}).")
        if self.delta_error is not None and not (0 < self.delta_error < 1):
            raise ConfigError(
                f"delta_error must be a number in (0, 1) or null (got {self.delta_error!r})."
            )
        if not (isinstance(self.max_domain_points, int) and self.max_domain_points >= 1000):
            raise ConfigError("max_domain_points must be an integer >= 1000.")

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            # the default mode runs fedguard's numpy kernel of Opacus' algorithm (same ε to
            # 1e-7, tested), without importing Opacus; eps_error set runs Opacus itself
            "library": "opacus" if self.eps_error is not None else "fedguard prv_kernel",
            "version": metadata.version("opacus"),
            "eps_error": self.eps_error
            if self.eps_error is not None
            else f"max({LIBRARY_EPS_ERROR}, {self.relative_precision:g} × ε)",
            "unsampled_gaussians": "closed form" if self.eps_error is None else "grid",
            "delta_error": self.delta_error if self.delta_error is not None else "delta/1000",
            "bound": "upper",
        }

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        steps, reason = gaussian_steps(event, "the PRV accountant")
        return (True, "") if steps else (False, reason)

    def _steps(self, event: PrivacyEvent) -> tuple[list[tuple[float, float, int]], float]:
        """The steps Opacus composes, and μ of the unsampled Gaussians when the closed form
        answers (the event has no sampled step and ``eps_error`` is ``None``), else 0."""
        steps, _ = gaussian_steps(event, "the PRV accountant")
        if self.eps_error is not None:
            return steps, 0.0
        sampled, mu = merge_unsampled(steps)
        if not sampled:
            return [], mu
        return sampled + ([(1.0, 1.0 / mu, 1)] if mu > 0 else []), 0.0

    def _eps_error(self, epsilon_estimate: float) -> float:
        if self.eps_error is not None:
            return self.eps_error
        return max(LIBRARY_EPS_ERROR, self.relative_precision * epsilon_estimate)

    def _domain(
        self, steps: list[tuple[float, float, int]], delta_error: float, eps_error: float
    ) -> tuple[float, float]:
        """``(half-width, mesh)`` of the discretisation grid; refused beyond
        ``max_domain_points``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.eps_error is None:
                half_width = safe_half_width(steps, eps_error, delta_error)
            else:
                from opacus.accountants.analysis.prv import (
                    PoissonSubsampledGaussianPRV,
                    compute_safe_domain_size,
                )

                half_width = compute_safe_domain_size(
                    prvs=[PoissonSubsampledGaussianPRV(rate, sigma) for rate, sigma, _ in steps],
                    max_self_compositions=[count for _, _, count in steps],
                    eps_error=eps_error,
                    delta_error=delta_error,
                )
        counts = [count for _, _, count in steps]
        mesh = eps_error / math.sqrt(sum(counts) * math.log(12 / delta_error) / 2)
        points = 2 * half_width / mesh
        if points > self.max_domain_points:
            setting = "; ".join(
                f"q = {q:g}, noise multiplier {z:g}, {n} steps" for q, z, n in steps
            )
            raise UnsupportedEventError(
                f"the PRV accountant would need {points:.3g} grid points (about "
                f"{points * 8 * 6 / 1e9:.1f} GB) for {setting} at eps_error {eps_error:g}; "
                "raise eps_error or use the pld accountant."
            )
        if self.eps_error is None:
            half_width = _fast_half_width(half_width, mesh)
        return half_width, mesh

    def _opacus_dprv(
        self, steps: list[tuple[float, float, int]], half_width: float, mesh: float
    ) -> Any:
        """Opacus' composed discrete PRV (``eps_error`` set: the library as configured)."""
        from opacus.accountants.analysis.prv import (
            Domain,
            PoissonSubsampledGaussianPRV,
            TruncatedPrivacyRandomVariable,
            compose_heterogeneous,
            discretize,
        )

        domain = Domain.create_aligned(-half_width, half_width, mesh)
        with np.errstate(divide="ignore", invalid="ignore"):
            dprvs = [
                discretize(
                    TruncatedPrivacyRandomVariable(
                        PoissonSubsampledGaussianPRV(rate, sigma), domain.t_min, domain.t_max
                    ),
                    domain,
                )
                for rate, sigma, _ in steps
            ]
            return compose_heterogeneous(
                dprvs=dprvs, num_self_compositions=[count for _, _, count in steps]
            )

    def _loss(
        self, steps: list[tuple[float, float, int]], delta_error: float, eps_error: float
    ) -> Any:
        """The composed discretised loss: fedguard's kernel by default, Opacus' with
        ``eps_error`` set."""
        half_width, mesh = self._domain(steps, delta_error, eps_error)
        if self.eps_error is not None:
            return self._opacus_dprv(steps, half_width, mesh)
        try:
            return prv_kernel.compose(steps, prv_kernel.Grid.aligned(half_width, mesh))
        except ValueError as err:
            raise UnsupportedEventError(f"the PRV accountant cannot discretise: {err}") from err

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        steps, mu = self._steps(event)
        if not steps:
            return gaussian_epsilon(mu, delta)
        delta_error = self.delta_error if self.delta_error is not None else delta / 1000
        eps_error = self._eps_error(
            RdpAccountant().epsilon(event, delta) if self.eps_error is None else math.nan
        )
        loss = self._loss(steps, delta_error, eps_error)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if isinstance(loss, prv_kernel.DiscreteLoss):
                try:
                    upper = prv_kernel.epsilon_bounds(loss, delta, delta_error, eps_error)
                except ValueError as err:
                    raise UnsupportedEventError(f"the PRV accountant: {err}") from err
            else:
                _, _, upper = loss.compute_epsilon(delta, delta_error, eps_error)
        if not math.isfinite(upper):
            # e^t on the grid: beyond ε ≈ 709 (ln of the largest double) the answer overflows
            # to inf or nan, which is no bound at all.
            raise UnsupportedEventError(
                "the PRV accountant overflows for this event (ε above about 709, where e^ε "
                "exceeds the largest double); use the pld or rdp accountant."
            )
        return max(0.0, float(upper))

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        steps, mu = self._steps(event)
        if not steps:
            return gaussian_delta(mu, epsilon)
        delta_error = self.delta_error if self.delta_error is not None else 1e-10
        eps_error = self._eps_error(epsilon)
        loss = self._loss(steps, delta_error, eps_error)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if isinstance(loss, prv_kernel.DiscreteLoss):
                estimate = prv_kernel.delta_estimate(loss, max(0.0, epsilon - eps_error))
            else:
                estimate = float(loss.compute_delta_estimate(max(0.0, epsilon - eps_error)))
        return estimate + delta_error
