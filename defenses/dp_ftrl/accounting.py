"""The privacy events a matrix-factorization mechanism files, round by round.

Without amplification the round's event is a
:class:`~fedguard.privacy.matrix_events.MatrixGaussian` whose multiplier makes the composition of
the first t events exactly the Gaussian of everything released by round t (μ_t = s_t / z, with
``s_t`` from :func:`~defenses.dp_ftrl.sensitivity.prefix_sensitivity_squared`); rounds that
release nothing new about any client file no event.

With amplification (Poisson rate q inside min-separation groups, ``bands ≤ b``: one client's
participations touch disjoint rows of C), the mechanism is k = ⌈T/b⌉ compositions of the
Poisson-subsampled Gaussian with multiplier ``z / max column norm`` (Choquette-Choo et al.
2023, Sec. 4: amplified BandMF is accounted as DP-SGD with rate q for k steps): the event
``Sampled(q, MatrixGaussian(…))`` is filed in the rounds of group 0 (t mod b = 0), the group
with the most participations. Each participation is charged in full in the round it happens
(its later correlated noise included), so every prefix is covered.

References
----------
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023.
Denisov, McMahan, Rush, Smith, Thakurta. "Improved Differential Privacy for SGD via Optimal
Private Linear Operators on Adaptive Streams." NeurIPS 2022.
"""

from __future__ import annotations

import math

import numpy as np

from defenses.dp_ftrl.sensitivity import (
    cyclic_patterns,
    max_participations,
    prefix_sensitivity_squared,
)
from fedguard.privacy.events import PrivacyEvent, Sampled
from fedguard.privacy.matrix_events import MatrixGaussian

#: An increment of the squared sensitivity below this (relative) is floating-point noise.
_NEGLIGIBLE = 1e-12


def round_events(
    strategy: np.ndarray,
    release_round: np.ndarray,
    *,
    name: str,
    bands: int,
    noise_multiplier: float,
    clip_norm: float,
    min_separation: int,
    sampling_rate: float = 1.0,
) -> list[PrivacyEvent | None]:
    """The event of each round ``0 … T − 1`` (``None``: nothing new released about anyone).

    ``strategy`` C (rows × rounds) with ``release_round`` of each row; ``noise_multiplier`` z =
    per-entry noise std ÷ ``clip_norm``.
    """
    rounds = strategy.shape[1]
    k = max_participations(rounds, min_separation)
    patterns = cyclic_patterns(rounds, min_separation)
    common = {
        "strategy": name,
        "rounds": rounds,
        "bands": bands,
        "min_separation": min_separation,
        "max_participations": k,
    }
    events: list[PrivacyEvent | None] = [None] * rounds
    if sampling_rate < 1.0:
        column = float(np.linalg.norm(strategy, axis=0).max())
        for t in range(0, rounds, min_separation):
            inner = MatrixGaussian(
                noise_multiplier / column,
                clip_norm * column,
                prefix_sensitivity=column * math.sqrt(t // min_separation + 1),
                **common,
            )
            events[t] = Sampled(sampling_rate, inner, scheme="poisson")
        return events
    squared = prefix_sensitivity_squared(strategy, release_round, patterns)  # (rounds,)
    previous = 0.0
    for t in range(rounds):
        increment = squared[t] - previous
        if increment > _NEGLIGIBLE * max(1.0, squared[t]):
            events[t] = MatrixGaussian(
                noise_multiplier / math.sqrt(increment),
                clip_norm * math.sqrt(increment),
                prefix_sensitivity=math.sqrt(squared[t]),
                **common,
            )
            previous = squared[t]
    return events


__all__ = ["round_events"]
