"""How the DP-FedAvg mechanisms turn one round's noise into a privacy event.

The event of Gaussian noise of standard deviation ``noise_stddev`` on the sum of updates clipped
to ``clip_norm`` is :func:`fedguard.privacy.events.gaussian_for_sum` under the sampling's
neighbouring relation (sensitivity C under add/remove, 2C under replace-one), wrapped in
``Sampled(rate, ..., scheme)``: Poisson sampling (add/remove) and a fixed cohort (sampling without
replacement, replace-one) are accounted differently; with every client in every round there is
no sampling amplification.

References
----------
McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
ICLR 2018.
Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism." 2019.
Wang, Balle, Kasiviswanathan. "Subsampled Rényi Differential Privacy and Analytical Moments
Accountant." AISTATS 2019 (sampling without replacement).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.privacy.events import PrivacyEvent, Sampled, gaussian_for_sum


def sampled(event: PrivacyEvent, sampling: Mapping[str, Any]) -> PrivacyEvent:
    """``event`` wrapped in the round's client sampling (none when every client takes part)."""
    scheme = str(sampling.get("scheme", "all"))
    rate = float(sampling.get("rate", 1.0))
    if scheme == "all" or rate >= 1.0:
        return event
    population = sampling.get("population")
    return Sampled(rate, event, scheme=scheme, population=int(population) if population else None)


def round_gaussian_event(
    clip_norm: float, noise_stddev: float, sampling: Mapping[str, Any]
) -> PrivacyEvent:
    """The event of N(0, noise_stddev² I) on the round's clipped sum, sampled as the round was."""
    relation = str(sampling.get("neighbouring_relation", "add_remove"))
    return sampled(gaussian_for_sum(clip_norm, noise_stddev, relation), sampling)


def expected_cohort(sampling: Mapping[str, Any]) -> float:
    """qW, the fixed denominator (public: it does not depend on who was sampled)."""
    value = sampling.get("expected_cohort")
    if not value or float(value) <= 0:
        raise ConfigError("the run's sampling must state expected_cohort > 0 for DP-FedAvg.")
    return float(value)


def rows_for_fixed_denominator(rows: Tensor, sampling: Mapping[str, Any]) -> Tensor:
    """Rows (n, d) rescaled by n / qW so that the server's uniform mean Σ rows / n equals the
    fixed-denominator estimate Σ rows / qW (the n cancels; nothing data-dependent remains)."""
    n = rows.shape[0]
    return rows * (n / expected_cohort(sampling))


__all__ = ["expected_cohort", "round_gaussian_event", "rows_for_fixed_denominator", "sampled"]
