"""Secure aggregation with distributed discrete Gaussian noise (Kairouz et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fedguard.api import TransportOutput
from fedguard.privacy.events import DiscreteGaussian, PrivacyEvent
from fedguard.types import RoundContext

from ..secure_aggregation.noise import DiscreteGaussianNoise
from ..secure_aggregation.transport import SecAggTransport
from .secagg_noise import DistributedNoiseMixin, local_lattice_stddev


@dataclass(frozen=True)
class SecAggDiscreteGaussian(DistributedNoiseMixin, SecAggTransport):
    """Bonawitz et al. secure aggregation in which every client adds N_Z(0, σ²) lattice noise.

    σ = z·C·scale/√(qW) per client (``noise_multiplier`` z, ``clip_norm`` C, the transport's
    ``scale``, the expected cohort qW from the run unless ``expected_clients`` is given). The
    round's :class:`~fedguard.privacy.events.DiscreteGaussian` event counts only the surviving
    clients beyond the ``n_byzantine`` tolerance (see :mod:`defenses.dp.secagg_noise` for the
    lattice sensitivity, C·scale + √d with d the encoded dimension). Its RDP carries the τ·d
    discreteness term, small once σ ≳ 2 lattice units.

    ``conditional_rounding_beta`` and ``rotation``: see
    :class:`~defenses.dp.secagg_noise.DistributedNoiseMixin`.

    References
    ----------
    Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated Learning
    with Secure Aggregation." ICML 2021.
    Canonne, Kamath, Steinke. "The Discrete Gaussian for Differential Privacy." NeurIPS 2020.
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
        return DiscreteGaussianNoise(sigma)

    def _event(self, honest: int, dimension: int) -> PrivacyEvent:
        return DiscreteGaussian(
            local_noise_stddev=self.client_noise.sigma,
            n_clients=honest,
            l2_sensitivity=self.lattice_sensitivity(dimension),
            dimension=dimension,
        )

    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        return self._call(super().__call__, updates, weights, ctx)
