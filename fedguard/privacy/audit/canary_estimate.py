"""One-shot empirical privacy *estimate* from canary cosines (Andrew et al. 2024).

The cosines of inserted canaries are fitted by a Gaussian N(μ̂, σ̂²) (sample mean, sample standard
deviation with ``ddof = 1``); the null is either N(0, 1/d) — the distribution of the cosine of a
random unit direction that took no part in training, exact in mean and variance and Gaussian for
large ``d`` — or a Gaussian fitted to the cosines of canaries that were *not* inserted. The
estimate is ε(δ) of the pair of Gaussians (:func:`gaussian_pair_epsilon`).

This is an **estimate, not a bound**: it has no confidence level, can exceed the true ε (sampling
error, non-Gaussian tails), and says nothing when it is below an accountant's ε. Use
:func:`fedguard.privacy.audit.one_run.one_run_audit` on the same cosines for a valid lower bound.

References
----------
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from fedguard.errors import require
from fedguard.privacy.audit.gaussian_pair import gaussian_pair_epsilon
from fedguard.privacy.audit.result import AuditResult


def canary_epsilon_estimate(
    observed: ArrayLike,
    *,
    delta: float,
    null: ArrayLike | None = None,
    dimension: int | None = None,
) -> AuditResult:
    """ε estimate from cosines of inserted canaries against a null.

    Parameters
    ----------
    observed
        ``(k,)`` statistics of inserted canaries (``k ≥ 2``).
    delta
        δ at which ε is computed.
    null
        ``(k′,)`` statistics of canaries that were not inserted (``k′ ≥ 2``); fitted by a Gaussian.
    dimension
        Model dimension ``d``: the null is N(0, 1/d). Give exactly one of ``null`` and
        ``dimension``.

    Returns
    -------
    AuditResult
        ``kind="estimate"``, ``method="canary_gaussian"``, ``confidence=None``.

    References
    ----------
    Andrew et al. (2024).
    """
    require((null is None) != (dimension is None), "null / dimension", "exactly one of the two")
    obs = np.asarray(observed, dtype=np.float64).ravel()  # (k,)
    require(obs.size >= 2, "observed", "at least two statistics")
    require(bool(np.all(np.isfinite(obs))), "observed", "finite numbers")
    mean_obs = float(obs.mean())
    std_obs = float(obs.std(ddof=1))
    require(std_obs > 0.0, "observed", "statistics that are not all equal")
    if dimension is not None:
        require(dimension >= 2, "dimension", "at least 2")
        mean_null, std_null, source = 0.0, 1.0 / math.sqrt(dimension), "analytic N(0, 1/d)"
    else:
        ref = np.asarray(null, dtype=np.float64).ravel()  # (k',)
        require(ref.size >= 2, "null", "at least two statistics")
        require(bool(np.all(np.isfinite(ref))), "null", "finite numbers")
        mean_null, std_null, source = float(ref.mean()), float(ref.std(ddof=1)), "fitted"
        require(std_null > 0.0, "null", "statistics that are not all equal")
    eps = gaussian_pair_epsilon(delta, mean_obs, std_obs, mean_null, std_null)
    return AuditResult(
        method="canary_gaussian",
        epsilon=eps,
        kind="estimate",
        delta=delta,
        confidence=None,
        details={
            "observed_mean": mean_obs,
            "observed_std": std_obs,
            "null_mean": mean_null,
            "null_std": std_null,
            "null": source,
            "n_observed": int(obs.size),
        },
    )
