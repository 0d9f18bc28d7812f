"""Audits above the core (beside the matrix): canary audits that train, and the evidence about a
finished run — cross-checks of its ledger, replay (``verify``), signatures.

* :func:`~fedguard.audit.empirical.empirical_audit` — a finished run replayed with canary clients
  (one-run audit, Steinke, Nasr and Jagielski 2023; canary cosine estimate, Andrew et al. 2024);
* :func:`sample_canary_audit` / :func:`gradient_canary_audit` — record-level DP-SGD audited in one
  run with mislabelled or Dirac-gradient canaries (Steinke et al. 2023; Nasr et al. 2023);
* :func:`gaussian_sum_release` — a synthetic Gaussian-sum release for testing the estimators.

The statistics they use are torch-free and live in :mod:`fedguard.privacy.audit` (re-exported
here); canary directions are core (:mod:`fedguard.core.canaries`), used by the canary plugin too.
"""

from __future__ import annotations

from fedguard.audit.sample_canaries import (
    SampleCanaryAudit,
    SampleCanaryConfig,
    canary_scores,
    dirac_canary_coordinates,
    gradient_canary_audit,
    mislabelled_canaries,
    sample_canary_audit,
)
from fedguard.audit.synthetic import gaussian_sum_release
from fedguard.core.canaries import (
    canary_cosines,
    canary_direction,
    canary_directions,
    canary_included,
    canary_inclusion,
    canary_max_round_cosines,
    canary_round_cosines,
)
from fedguard.privacy.audit import *  # noqa: F403  (the statistics, one import for callers)
from fedguard.privacy.audit import __all__ as _statistics

__all__ = [
    *_statistics,
    "SampleCanaryAudit",
    "SampleCanaryConfig",
    "canary_cosines",
    "canary_direction",
    "canary_directions",
    "canary_included",
    "canary_inclusion",
    "canary_max_round_cosines",
    "canary_round_cosines",
    "canary_scores",
    "dirac_canary_coordinates",
    "gaussian_sum_release",
    "gradient_canary_audit",
    "mislabelled_canaries",
    "sample_canary_audit",
]
