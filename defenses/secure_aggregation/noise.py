"""Integer noise added by each client in Z_R before masking (distributed DP hook).

A noise source is any object with

* ``__call__(encoded, generator) -> Tensor``: the client's ``(d,)`` int64 encoded vector with its
  noise added (integers, before reduction mod R);
* ``variance``: the per-coordinate variance of one client's noise, in encoded integer units;
* ``tail_bound(threshold, n_clients)``: an upper bound on P(|sum of n_clients' noise| ≥ threshold)
  for one coordinate, used to choose the bit width so that a wrap-around is unlikely.

Two sources are given here: Skellam (Agarwal et al. 2021) and the discrete Gaussian (Canonne,
Kamath, Steinke 2020; distributed use by Kairouz et al. 2021). The mechanisms built on them also
need a random rotation and conditional (norm-bounded) rounding **before** encoding; those belong
to the DP mechanism, not to this transport. The privacy accounting must use the noise actually
present after dropouts, which the transport reports (``info["noise_clients"]``).

References
----------
.. [1] N. Agarwal, P. Kairouz, Z. Liu, "The Skellam Mechanism for Differentially Private
   Federated Learning", NeurIPS 2021.
.. [2] C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
   NeurIPS 2020 (Algorithm 3 sampler; the discrete Gaussian is σ²-subgaussian).
.. [3] P. Kairouz, Z. Liu, T. Steinke, "The Distributed Discrete Gaussian Mechanism for Federated
   Learning with Secure Aggregation", ICML 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from fedguard.api import require_positive


@runtime_checkable
class ClientNoise(Protocol):
    @property
    def variance(self) -> float: ...

    def __call__(self, encoded: Tensor, generator: torch.Generator) -> Tensor: ...

    def tail_bound(self, threshold: float, n_clients: int) -> float: ...


@dataclass(frozen=True)
class SkellamNoise:
    """Skellam(μ) = Poisson(μ) − Poisson(μ) per coordinate (variance 2μ); sums stay Skellam.

    References
    ----------
    .. [1] N. Agarwal, P. Kairouz, Z. Liu, "The Skellam Mechanism for Differentially Private
       Federated Learning", NeurIPS 2021.
    """

    mu: float

    def __post_init__(self) -> None:
        require_positive(self, "mu")

    @property
    def variance(self) -> float:
        return 2.0 * self.mu

    def __call__(self, encoded: Tensor, generator: torch.Generator) -> Tensor:
        rate = torch.full(encoded.shape, self.mu, dtype=torch.float64)
        plus = torch.poisson(rate, generator=generator)
        minus = torch.poisson(rate, generator=generator)
        return encoded + (plus - minus).to(torch.int64)

    def tail_bound(self, threshold: float, n_clients: int) -> float:
        """Chernoff: P(|S| ≥ a) ≤ 2 exp(−λa + 2nμ(cosh λ − 1)), λ = asinh(a / (2nμ))."""
        if threshold <= 0:
            return 1.0
        total = n_clients * self.mu
        lam = math.asinh(threshold / (2.0 * total))
        log_p = -lam * threshold + 2.0 * total * (math.cosh(lam) - 1.0)
        return min(1.0, 2.0 * math.exp(log_p))


@dataclass(frozen=True)
class DiscreteGaussianNoise:
    """Discrete Gaussian N_Z(0, σ²): P(k) ∝ exp(−k² / (2σ²)), by rejection from a discrete Laplace.

    Canonne et al. (2020), Algorithm 3, vectorized; the acceptance test uses float64
    exponentials (not their exact-arithmetic Bernoulli), adequate for simulation.

    References
    ----------
    .. [1] C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
       NeurIPS 2020.
    """

    sigma: float

    def __post_init__(self) -> None:
        require_positive(self, "sigma")

    @property
    def variance(self) -> float:
        """σ², an upper bound on the true variance (used for the noise report)."""
        return self.sigma**2

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        count = math.prod(shape)
        out = torch.empty(count, dtype=torch.int64)
        todo = torch.arange(count)
        t = math.floor(self.sigma) + 1
        p = 1.0 - math.exp(-1.0 / t)
        while todo.numel():
            m = todo.numel()
            g1 = torch.empty(m, dtype=torch.float64).geometric_(p, generator=generator)
            g2 = torch.empty(m, dtype=torch.float64).geometric_(p, generator=generator)
            y = g1 - g2  # discrete Laplace with scale t
            accept_p = torch.exp(-((y.abs() - self.sigma**2 / t) ** 2) / (2.0 * self.sigma**2))
            ok = torch.rand(m, generator=generator, dtype=torch.float64) < accept_p
            out[todo[ok]] = y[ok].to(torch.int64)
            todo = todo[~ok]
        return out.reshape(shape)

    def __call__(self, encoded: Tensor, generator: torch.Generator) -> Tensor:
        return encoded + self.sample(tuple(encoded.shape), generator)

    def tail_bound(self, threshold: float, n_clients: int) -> float:
        """Sub-Gaussian tail of the sum of n: P(|S| ≥ a) ≤ 2 exp(−a² / (2nσ²))."""
        if threshold <= 0:
            return 1.0
        return min(1.0, 2.0 * math.exp(-(threshold**2) / (2.0 * n_clients * self.sigma**2)))
