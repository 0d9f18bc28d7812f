"""Banded matrix factorization DP-FTRL (BandMF; Choquette-Choo et al., NeurIPS 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from defenses.dp_ftrl.banded_factorization import OBJECTIVES, bandmf_strategy
from defenses.dp_ftrl.matrix_mechanism import MatrixMechanism
from defenses.dp_ftrl.streaming_noise import banded_noise
from fedguard.api import require, require_positive
from fedguard.errors import IncompatibleError


@dataclass(frozen=True)
class BandMF(MatrixMechanism):
    """BandMF: noise ``C⁻¹Z`` correlated across rounds, C banded and optimised for the horizon.

    C (rounds × rounds) is lower triangular with ``bands`` non-zero diagonals and unit column
    norms, optimised for the total (or, ``objective="max"``, the largest) squared error of the prefix sums
    (:func:`~defenses.dp_ftrl.banded_factorization.bandmf_strategy`). The server adds
    ``σ · (C⁻¹Z)_t`` (σ = ``noise_multiplier · clip_norm``, Z i.i.d. standard normal) to round t's
    clipped sum and releases it over the public expected cohort; the model's prefix sums carry
    ``σ · A C⁻¹ Z``. Memory: the last ``bands − 1`` noise vectors (the transform's state).

    Privacy (:mod:`~defenses.dp_ftrl.accounting`): without sampling, a Gaussian mechanism of
    sensitivity ``√max_π Σ_{i,j∈π} |(CᵀC)_{ij}|`` over the schedule's patterns (``√k``, k = ⌈T/b⌉,
    when ``bands ≤ b``); with Poisson rate q inside min-separation groups and ``bands ≤ b``,
    k compositions of the Poisson-subsampled Gaussian of multiplier z (amplified BandMF). One band
    is DP-FedAvg's independent noise (C = I).

    Parameters
    ----------
    noise_multiplier : float
        z > 0: std of Z's entries ÷ ``clip_norm``.
    clip_norm : float
        C > 0, at least the ``clip`` transform's.
    bands : int
        Non-zero diagonals of C (≥ 1); at most the min separation when sampling amplifies.
    rounds : int
        Horizon of the strategy; 0 = the run's number of rounds.
    objective : str
        ``"total"`` (sum of the prefix sums' variances, the paper's) or ``"max"`` (the largest).

    References
    ----------
    Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
    approach to private training." NeurIPS 2023.
    Denisov, McMahan, Rush, Smith, Thakurta. "Improved Differential Privacy for SGD via Optimal
    Private Linear Operators on Adaptive Streams." NeurIPS 2022.
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    bands: int = 1
    rounds: int = 0
    objective: str = "total"
    stream: ClassVar[str] = "bandmf"

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        require(isinstance(self.bands, int) and self.bands >= 1, "bands", "an integer >= 1")
        require(isinstance(self.rounds, int) and self.rounds >= 0, "rounds", "an integer >= 0")
        require(self.objective in OBJECTIVES, "objective", "'total' or 'max'")

    def strategy_name(self) -> str:
        return "bandmf"

    def band_count(self, horizon: int, separation: int) -> int:
        return min(self.bands, horizon)

    def factorization(self, horizon: int, separation: int) -> tuple[np.ndarray, np.ndarray]:
        return bandmf_strategy(horizon, self.bands, objective=self.objective), np.arange(horizon)

    def check_schedule(self, horizon: int, separation: int, rate: float) -> None:
        if rate < 1.0 and min(self.bands, horizon) > separation:
            raise IncompatibleError(
                f"amplified bandmf needs bands ({self.bands}) <= clients.min_separation "
                f"({separation}): one client's participations must touch disjoint rows of C."
            )

    def round_noise(
        self, t: int, horizon: int, separation: int, state: Mapping[str, Any], draw: Any
    ) -> tuple[Tensor, dict[str, Any]]:
        strategy = bandmf_strategy(horizon, self.bands, objective=self.objective)
        fresh = draw(1)[0]  # (d,)
        recent = state.get("recent_noise")
        if recent is None:
            recent = fresh.new_zeros((0, fresh.shape[0]))
        w = banded_noise(t, strategy, recent, fresh)  # (d,)
        keep = min(self.bands, horizon) - 1
        updated = torch.cat([w[None], recent])[:keep]  # (≤ bands − 1, d), newest first
        return w, {"recent_noise": updated}
