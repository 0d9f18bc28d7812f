"""Secure aggregation with distributed Skellam noise (Agarwal et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fedguard.api import TransportOutput
from fedguard.privacy.events import PrivacyEvent, Skellam
from fedguard.types import RoundContext

from ..secure_aggregation.noise import SkellamNoise
from ..secure_aggregation.transport import SecAggTransport
from .secagg_noise import DistributedNoiseMixin, local_lattice_stddev


@dataclass(frozen=True)
class SecAggSkellam(DistributedNoiseMixin, SecAggTransport):
    """Bonawitz et al. secure aggregation in which every client adds Skellam lattice noise.

    Each client adds Skellam(μ) = Poisson(μ) − Poisson(μ) per coordinate with variance
    2μ = (z·C·scale)²/qW; sums of Skellam stay Skellam, so the round's
    :class:`~fedguard.privacy.events.Skellam` event records the variance of the surviving clients
    beyond the ``n_byzantine`` tolerance. Lattice sensitivity C·scale + √d, d the encoded
    dimension (see :mod:`defenses.dp.secagg_noise`).

    ``conditional_rounding_beta`` and ``rotation``: see
    :class:`~defenses.dp.secagg_noise.DistributedNoiseMixin`.

    References
    ----------
    Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private Federated Learning."
    NeurIPS 2021.
    Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning
    with Secure Aggregation." ICML 2021 (random rotation, conditional rounding).
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    expected_clients: float | None = None
    conditional_rounding_beta: float | None = None
    rotation: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._validate_noise()

    def _make_noise(self, expected: float) -> Any:
        sigma = local_lattice_stddev(self.noise_multiplier, self.clip_norm, self.scale, expected)
        return SkellamNoise(sigma**2 / 2.0)

    def _event(self, honest: int, dimension: int) -> PrivacyEvent:
        return Skellam(
            variance=honest * self.client_noise.variance,
            l2_sensitivity=self.lattice_sensitivity(dimension),
            dimension=dimension,
        )

    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        return self._call(super().__call__, updates, weights, ctx)
