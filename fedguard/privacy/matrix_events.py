"""Privacy event of a matrix-factorization mechanism (DP-FTRL tree aggregation, BandMF).

A matrix mechanism releases ``C·X + Z`` (Z i.i.d. Gaussian of standard deviation σ per entry)
for the rounds' clipped sums X; for one client's participation pattern it is exactly a Gaussian
mechanism of multiplier ``σ / (clip_norm · sens(C))``, also for adaptively chosen inputs
(Denisov et al. 2022). Its ledger records one :class:`MatrixGaussian` per round in which the
sensitivity of what has been released so far grows: the round's multiplier is
``z / √(s_t² − s_{t−1}²)`` with ``s_t`` the sensitivity (in clip norms) of everything released up
to round t, so that the composition of the first t events — Gaussian μ² add up — is exactly the
Gaussian of the prefix, ``μ_t = s_t / z``, at every t. Under amplification (Poisson sampling
inside min-separation groups, bands ≤ separation) the event is one participation's Gaussian,
wrapped in :class:`~fedguard.privacy.events.Sampled`.

The class is a :class:`~fedguard.privacy.events.Gaussian` (every accountant accounts it by its
``noise_multiplier``, exactly) that also records the strategy and the participation pattern.
``sensitivity`` is the increment in update units (``clip_norm · √(s_t² − s_{t−1}²)``), so that
``noise_stddev`` is the per-entry σ, as for :class:`Gaussian`.

References
----------
Denisov, McMahan, Rush, Smith, Thakurta. "Improved Differential Privacy for SGD via Optimal
Private Linear Operators on Adaptive Streams." NeurIPS 2022.
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023.
Kairouz, McMahan, Song, Thakkar, Thakurta, Xu. "Practical and Private (Deep) Learning without
Sampling or Shuffling." ICML 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedguard.errors import require
from fedguard.privacy.events import Gaussian, _positive_float, _positive_int, _register

STRATEGIES: tuple[str, ...] = ("tree_plain", "tree_honaker", "bandmf")


@_register
@dataclass(frozen=True)
class MatrixGaussian(Gaussian):
    """One round's share of a matrix-factorization mechanism (see the module docstring).

    ``strategy``: ``"tree_plain"``, ``"tree_honaker"`` or ``"bandmf"``; ``rounds``: the horizon
    the strategy was built for; ``bands``: non-zero diagonals of C (trees: the restart period);
    ``min_separation``: b of the schedule (1 = every round); ``max_participations``: ⌈T/b⌉;
    ``prefix_sensitivity``: s_t, in clip norms, of everything released up to this round.
    """

    type_tag: ClassVar[str] = "matrix_gaussian"
    strategy: str = "bandmf"
    rounds: int = 1
    bands: int = 1
    min_separation: int = 1
    max_participations: int = 1
    prefix_sensitivity: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.strategy in STRATEGIES,
            "strategy",
            f"one of {list(STRATEGIES)} (got {self.strategy!r})",
        )
        for name in ("rounds", "bands", "min_separation", "max_participations"):
            object.__setattr__(self, name, _positive_int(getattr(self, name), name))
        object.__setattr__(
            self,
            "prefix_sensitivity",
            _positive_float(self.prefix_sensitivity, "prefix_sensitivity"),
        )


__all__ = ["STRATEGIES", "MatrixGaussian"]
