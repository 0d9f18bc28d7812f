"""Rényi-DP accountant (own implementation).

Per-order RDP of every leaf event is summed over the composition and converted to (ε, δ) with
the Balle et al. 2020 bound, minimised over a fine, wide grid of orders. An event made only of
unsampled Gaussians is one Gaussian mechanism (Dong, Roth & Su 2022) and gets its exact ε(δ)
(Balle & Wang 2018) instead — tighter than any RDP conversion, and what PLD and PRV answer too
(``unsampled_closed_form=False`` for the RDP conversion).

Conventions
-----------
- Fractional orders of the Poisson-subsampled Gaussian use the series of Mironov et al. 2019
  (Sec. 3.3) with the absolute values of the generalised binomial coefficients and the same
  stopping rule as Opacus and dp-accounting, so per-order values agree with both.
- Sampling without replacement uses Theorem 27 of Wang, Balle & Kasiviswanathan 2019 for
  integer orders (exact book-keeping up to order 256, its cruder second bound above) and
  their Corollary 10 (linear interpolation of the cumulant) for fractional orders — the choice
  of dp-accounting's ``RdpAccountant`` under ``REPLACE_ONE``.
- The default order grid is 1.1, 1.2, …, 10.9, then every integer 11…256, then 272…512 in steps
  of 16: a superset of Opacus' grid (which stops at 63), so ε is never above Opacus'.

References
----------
Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism." 2019.
Wang, Balle, Kasiviswanathan. "Subsampled Rényi Differential Privacy and Analytical Moments
Accountant." AISTATS 2019.
Balle, Barthe, Gaboardi, Hsu, Sato. "Hypothesis Testing Interpretations and Rényi Differential
Privacy." AISTATS 2020 (Proposition 12 / Theorem 21: the RDP → (ε, δ) conversion).
Balle, Wang. "Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration
and Optimal Denoising." ICML 2018 (the exact ε of one Gaussian mechanism).
Dong, Roth, Su. "Gaussian Differential Privacy." JRSS-B 2022 (composition of Gaussians).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from fedguard.errors import ConfigError
from fedguard.privacy.accountants.analytic import (
    gaussian_delta,
    gaussian_epsilon,
    unsampled_gaussian_mu,
)
from fedguard.privacy.accountants.base import Accountant
from fedguard.privacy.events import (
    Composed,
    DiscreteGaussian,
    Gaussian,
    PrivacyEvent,
    RandomizedQuantization,
    Sampled,
    Skellam,
    effective_gaussian_multiplier,
    leaf_counts,
)

DEFAULT_ORDERS: tuple[float, ...] = (
    tuple(round(1 + x / 10.0, 1) for x in range(1, 100))
    + tuple(float(a) for a in range(11, 257))
    + tuple(float(a) for a in range(272, 513, 16))
)

_MAX_TERMS_FRAC = 1 << 19  # Opacus has no cap; dp-accounting stops at 1000
_WOR_EXACT_MAX_ORDER = 256  # dp-accounting's switch to the O(α) bound


def _log_comb(n: float | np.ndarray, k: np.ndarray) -> np.ndarray:
    """log |binom(n, k)| via log-gamma (absolute value for fractional n)."""
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def _log_erfc(x: np.ndarray) -> np.ndarray:
    return math.log(2) + special.log_ndtr(-x * math.sqrt(2))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_α for integer α (binomial expansion; Mironov et al. 2019, Sec. 3.2)."""
    i = np.arange(alpha + 1, dtype=np.float64)  # (α + 1,)
    terms = (
        _log_comb(float(alpha), i)
        + i * math.log(q)
        + (alpha - i) * math.log1p(-q)
        + (i * i - i) / (2 * sigma**2)
    )
    return float(special.logsumexp(terms))


def _frac_terms(q: float, sigma: float, alpha: float, i: np.ndarray) -> tuple[np.ndarray, ...]:
    """Signs and log magnitudes of the i-th terms of the two series of Sec. 3.3."""
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    j = alpha - i
    log_coef = _log_comb(alpha, i)  # log |binom(α, i)|
    # sign of binom(α, i): one negative factor (α − k) for every k in (α, i − 1]
    n_negative = np.maximum(0.0, i - 1 - math.floor(alpha))
    sign = np.where(n_negative % 2 == 0, 1.0, -1.0)
    log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
    log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
    log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
    log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
    log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
    log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
    return sign, log_s0, log_s1


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_α for fractional α (Mironov et al. 2019, Sec. 3.3), vectorised over the series.

    The generalised binomial coefficients keep their signs (the paper's exact series, as in
    Opacus); terms are summed up to and including the first whose magnitude is below e^-30
    (Opacus' stopping rule). A series that has not converged after ``_MAX_TERMS_FRAC`` terms
    excludes the order (RDP = inf), which can only make ε larger.
    """
    start, chunk = 0, 1024
    signs, s0s, s1s = [], [], []
    while start < _MAX_TERMS_FRAC:
        i = np.arange(start, min(start + chunk, _MAX_TERMS_FRAC), dtype=np.float64)
        sign, log_s0, log_s1 = _frac_terms(q, sigma, alpha, i)
        hits = np.flatnonzero(np.maximum(log_s0, log_s1) < -30)
        if hits.size:
            k = hits[0] + 1
            signs.append(sign[:k])
            s0s.append(log_s0[:k])
            s1s.append(log_s1[:k])
            sign_all = np.concatenate(signs)
            a0, sgn0 = special.logsumexp(np.concatenate(s0s), b=sign_all, return_sign=True)
            a1, sgn1 = special.logsumexp(np.concatenate(s1s), b=sign_all, return_sign=True)
            if sgn0 < 0 or sgn1 < 0:
                return math.inf
            return float(np.logaddexp(a0, a1))
        signs.append(sign)
        s0s.append(log_s0)
        s1s.append(log_s1)
        start += i.size
        chunk *= 2
    return math.inf


def rdp_poisson_gaussian(
    sampling_rate: float, noise_multiplier: float, orders: Sequence[float]
) -> np.ndarray:
    """RDP ε(α) of one Poisson-subsampled Gaussian step (add/remove), per order.

    References
    ----------
    Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism." 2019.
    """
    q, sigma = float(sampling_rate), float(noise_multiplier)
    alphas = np.asarray(orders, dtype=np.float64)  # (n_orders,)
    if q == 1.0:
        return alphas / (2 * sigma**2)
    out = np.empty_like(alphas)
    for k, alpha in enumerate(alphas):
        if float(alpha).is_integer():
            log_a = _log_a_int(q, sigma, int(alpha))
        else:
            log_a = _log_a_frac(q, sigma, float(alpha))
        out[k] = log_a / (alpha - 1)
    return out


@functools.lru_cache(maxsize=64)
def _wor_forward_differences(sigma: float, n: int) -> np.ndarray:
    """log |Δ^(k+1) v(0)| for k = 0 … n + 1, v(j) = exp((j − 1) j / (2σ²)) (v(0) = 1).

    The same log-space recursion (sign + magnitude) as dp-accounting, one vectorised pass per
    difference order.
    """
    vals = np.zeros(n + 3)  # log magnitudes of [v(0), v(1), …, v(n + 2)]
    js = np.arange(1, n + 3, dtype=np.float64) - 1.0
    vals[1:] = js * (js + 1) / (2.0 * sigma**2)
    signs = np.ones(n + 3, dtype=bool)
    deltas = np.zeros(n + 2)
    for k in range(n + 2):
        m = n + 2 - k  # entries updated in this pass
        a, b = vals[:m].copy(), vals[1 : m + 1].copy()
        sa, sb = signs[:m].copy(), signs[1 : m + 1].copy()
        same = sa == sb
        # same sign: log|e^b − e^a| with sign (b > a), toggled when both are negative
        hi, lo = np.maximum(a, b), np.minimum(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            sub_mag = np.where(a == b, -np.inf, hi + np.log1p(-np.exp(lo - hi)))
        sub_sign = np.where(a == b, True, b > a)
        sub_sign = np.where(sb, sub_sign, ~sub_sign)
        # different signs: log(e^a + e^b) with the sign of b
        add_mag = np.logaddexp(a, b)
        vals[:m] = np.where(same, sub_mag, add_mag)
        signs[:m] = np.where(same, sub_sign, sb)
        deltas[k] = vals[0]
    return deltas


def _wor_log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log of the Theorem 27 bound (WBK19) on E[(p/q)^α] for integer α."""
    if alpha == 1:
        return 0.0

    def cgf(x: np.ndarray) -> np.ndarray:
        return x * (x + 1) / (2.0 * sigma**2)

    f2 = 2.0 / (2.0 * sigma**2)
    log_f2m1 = f2 + math.log1p(-math.exp(-f2))
    first = (
        2 * math.log(q)
        + float(_log_comb(float(alpha), np.array(2.0)))
        + min(math.log(4) + log_f2m1, f2 + math.log(2))
    )
    i = np.arange(3, alpha + 1, dtype=np.float64)  # (α − 2,)
    if alpha <= _WOR_EXACT_MAX_ORDER:
        deltas = _wor_forward_differences(sigma, _WOR_EXACT_MAX_ORDER)
        lo = deltas[(2 * np.floor(i / 2.0)).astype(int) - 1]
        hi = deltas[(2 * np.ceil(i / 2.0)).astype(int) - 1]
        s = np.minimum(math.log(4) + 0.5 * (lo + hi), math.log(2) + cgf(i - 1))
    else:
        s = math.log(2) + cgf(i - 1)
    s = s + i * math.log(q) + _log_comb(float(alpha), i)
    return float(special.logsumexp(np.concatenate([[0.0, first], s])))


def rdp_wor_gaussian(
    sampling_rate: float, noise_multiplier: float, orders: Sequence[float]
) -> np.ndarray:
    """RDP ε(α) of one Gaussian step on a uniformly random fixed-size subset (replace-one).

    References
    ----------
    Wang, Balle, Kasiviswanathan. "Subsampled Rényi Differential Privacy and Analytical Moments
    Accountant." AISTATS 2019 (Theorem 27; Corollary 10 for fractional orders).
    """
    q, sigma = float(sampling_rate), float(noise_multiplier)
    alphas = np.asarray(orders, dtype=np.float64)
    if q == 1.0:
        return alphas / (2 * sigma**2)
    out = np.empty_like(alphas)
    for k, alpha in enumerate(alphas):
        if float(alpha).is_integer():
            out[k] = _wor_log_a_int(q, sigma, int(alpha)) / (alpha - 1)
        else:
            lo, hi = math.floor(alpha), math.ceil(alpha)
            t = alpha - lo
            x, y = _wor_log_a_int(q, sigma, lo), _wor_log_a_int(q, sigma, hi)
            out[k] = ((1 - t) * x + t * y) / (alpha - 1)
    return out


def rdp_to_epsilon(orders: ArrayLike, rdp: ArrayLike, delta: float) -> tuple[float, float]:
    """(ε, optimal order) from per-order RDP (Balle et al. 2020, Proposition 12):
    ε = RDP(α) + ln((α − 1)/α) − (ln δ + ln α)/(α − 1), minimised over α; ε = 0 where the KL
    bound δ ≥ sqrt(1 − exp(−RDP)) already holds."""
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        eps = r + np.log1p(-1 / a) - np.log(delta * a) / (a - 1)
        eps = np.where(delta**2 + np.expm1(-r) > 0, 0.0, eps)
    eps = np.where(r < 0, 0.0, eps)
    eps = np.where(a > 1.01, eps, np.where(eps == 0.0, 0.0, np.inf))
    eps = np.where(np.isnan(eps), np.inf, eps)
    k = int(np.argmin(eps))
    return max(0.0, float(eps[k])), float(a[k])


def rdp_to_delta(orders: ArrayLike, rdp: ArrayLike, epsilon: float) -> tuple[float, float]:
    """(δ, optimal order) from per-order RDP: the inverse of :func:`rdp_to_epsilon`,
    ln δ = min((α − 1)(RDP(α) − ε + ln(1 − 1/α)) − ln α, ½ ln(1 − exp(−RDP)))."""
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        kl = np.where(r <= 0, -np.inf, 0.5 * np.log1p(-np.exp(-r)))
        bound = (a - 1) * (r - epsilon + np.log1p(-1 / a)) - np.log(a)
        logd = np.where(a > 1.01, np.minimum(kl, bound), kl)
    logd = np.where(np.isnan(logd), np.inf, logd)
    k = int(np.argmin(logd))
    return min(1.0, math.exp(min(float(logd[k]), 0.0))), float(a[k])


@dataclass(frozen=True)
class RdpAccountant(Accountant):
    """Rényi-DP accountant over a fixed grid of orders (see module docstring).

    Supports Gaussian, Poisson-sampled and fixed-cohort (without replacement) Gaussian — also
    over a composition of Gaussians on the same sample — randomized quantization, distributed
    discrete Gaussian and Skellam events, and any composition of those. A tree mixing Poisson
    sampling (add/remove) and sampling without replacement (replace-one) is refused: the two are
    guarantees for different neighbouring relations.
    """

    name: ClassVar[str] = "rdp"
    orders: tuple[float, ...] = DEFAULT_ORDERS
    #: an event made only of unsampled Gaussians is one Gaussian of μ = √(Σ count / z²): answer
    #: with its exact ε(δ) / δ(ε) (Balle & Wang 2018), always at most the RDP conversion's —
    #: ``False`` gives the RDP conversion (Opacus' and dp-accounting's RDP answer) everywhere
    unsampled_closed_form: bool = True

    def __post_init__(self) -> None:
        orders = tuple(float(a) for a in self.orders)
        if not orders or any(not (a > 1) or not math.isfinite(a) for a in orders):
            raise ConfigError("orders must be a non-empty list of finite numbers > 1.")
        object.__setattr__(self, "orders", orders)

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "implementation": "fedguard",
            "conversion": "Balle et al. 2020",
            "n_orders": len(self.orders),
            "min_order": min(self.orders),
            "max_order": max(self.orders),
            "fractional_step": 0.1,
            "unsampled_gaussians": "closed form" if self.unsampled_closed_form else "rdp",
        }

    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        schemes = set()
        for leaf in leaf_counts(event):
            if isinstance(leaf, Sampled):
                if leaf.rate < 1 and effective_gaussian_multiplier(leaf.event) is None:
                    return False, (
                        f"only Gaussian events can be sampled for RDP accounting "
                        f"(found {type(leaf.event).__name__} inside a sampled event)."
                    )
                if leaf.rate < 1:
                    schemes.add(leaf.scheme)
                elif effective_gaussian_multiplier(leaf.event) is None:
                    ok, reason = self.supports(leaf.event)
                    if not ok:
                        return ok, reason
            elif not isinstance(
                leaf, Gaussian | RandomizedQuantization | DiscreteGaussian | Skellam
            ):
                return False, f"unknown event type {type(leaf).__name__}."
        if len(schemes) > 1:
            return False, (
                "the event mixes Poisson sampling (add/remove) and sampling without replacement "
                "(replace-one); account each relation separately."
            )
        return True, ""

    def rdp(self, event: PrivacyEvent) -> np.ndarray:
        """Per-order RDP of ``event`` on :attr:`orders`, shape ``(n_orders,)``."""
        self._check(event)
        return self._rdp(event)

    def _rdp(self, event: PrivacyEvent) -> np.ndarray:
        total = np.zeros(len(self.orders))
        for leaf, count in leaf_counts(event).items():
            total = total + count * _leaf_rdp(leaf, self.orders)
        return total

    def epsilon_and_order(self, event: PrivacyEvent, delta: float) -> tuple[float, float]:
        """ε and the order that achieves it."""
        self.epsilon(event, delta)  # validates
        return rdp_to_epsilon(self.orders, self._rdp(event), delta)

    def _closed_form_mu(self, event: PrivacyEvent) -> float | None:
        return unsampled_gaussian_mu(event) if self.unsampled_closed_form else None

    def _epsilon(self, event: PrivacyEvent, delta: float) -> float:
        mu = self._closed_form_mu(event)
        if mu is not None:
            return gaussian_epsilon(mu, delta)
        return rdp_to_epsilon(self.orders, self._rdp(event), delta)[0]

    def _delta(self, event: PrivacyEvent, epsilon: float) -> float:
        mu = self._closed_form_mu(event)
        if mu is not None:
            return gaussian_delta(mu, epsilon)
        return rdp_to_delta(self.orders, self._rdp(event), epsilon)[0]


@functools.lru_cache(maxsize=4096)
def _leaf_rdp_cached(leaf: PrivacyEvent, orders: tuple[float, ...]) -> np.ndarray:
    if isinstance(leaf, Gaussian):
        return np.asarray(orders) / (2 * leaf.noise_multiplier**2)
    if isinstance(leaf, Sampled):
        sigma = effective_gaussian_multiplier(leaf.event)
        if sigma is None:  # rate == 1, not Gaussian: the inner event itself
            return _compose_rdp(leaf.event, orders)
        if leaf.scheme == "poisson":
            return rdp_poisson_gaussian(leaf.rate, sigma, orders)
        return rdp_wor_gaussian(leaf.rate, sigma, orders)
    if isinstance(leaf, RandomizedQuantization):
        from fedguard.privacy.rqm import rqm_rdp

        return rqm_rdp(leaf, orders)
    if isinstance(leaf, DiscreteGaussian):
        from fedguard.privacy.discrete import discrete_gaussian_rdp

        return discrete_gaussian_rdp(leaf, orders)
    if isinstance(leaf, Skellam):
        from fedguard.privacy.discrete import skellam_rdp

        return skellam_rdp(leaf, orders)
    raise ConfigError(f"privacy event type {type(leaf).__name__} is not known to the accountant.")


def _compose_rdp(event: PrivacyEvent, orders: tuple[float, ...]) -> np.ndarray:
    total = np.zeros(len(orders))
    for leaf, count in leaf_counts(event).items():
        total = total + count * _leaf_rdp(leaf, orders)
    return total


def _leaf_rdp(leaf: PrivacyEvent, orders: tuple[float, ...]) -> np.ndarray:
    out = _leaf_rdp_cached(leaf, orders)
    out.setflags(write=False)
    return out


__all__ = [
    "DEFAULT_ORDERS",
    "Composed",
    "RdpAccountant",
    "rdp_poisson_gaussian",
    "rdp_to_delta",
    "rdp_to_epsilon",
    "rdp_wor_gaussian",
]
