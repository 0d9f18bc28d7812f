"""Empirical privacy auditing, the statistics: ε lower bounds and estimates from canary scores.

Torch-free, like the rest of :mod:`fedguard.privacy`. The audits that *train* canary variants
(:mod:`fedguard.audit`) live above the core and call these.

Standalone estimators work on score arrays:

* :func:`clopper_pearson_epsilon`, :func:`threshold_audit` — classical audit from many runs with and
  without a canary (Jagielski et al. 2020), exact binomial intervals.
* :func:`gdp_audit`, :func:`gdp_threshold_audit`, :func:`gdp_epsilon` — the Gaussian-DP (μ)
  conversion (Nasr et al. 2023; Dong, Roth and Su 2022).
* :func:`one_run_audit`, :func:`one_run_epsilon`, :func:`max_certifiable_epsilon` — auditing with
  one training run (Steinke, Nasr and Jagielski 2023).
* :func:`sample_canary_audit` — record-level DP-SGD (Opacus) audited in one run with mislabelled
  canary examples (Steinke, Nasr and Jagielski 2023); :func:`gradient_canary_audit` — the same
  with white-box Dirac gradient canaries (Nasr et al. 2023).
* :func:`canary_epsilon_estimate` — the one-shot FL estimate from canary cosines (Andrew et al.
  2024); an estimate, not a bound.
"""

from __future__ import annotations

from fedguard.privacy.audit.binomial import (
    clopper_pearson_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from fedguard.privacy.audit.canary_estimate import canary_epsilon_estimate
from fedguard.privacy.audit.classical import (
    clopper_pearson_epsilon,
    epsilon_from_rate_bounds,
    threshold_audit,
)
from fedguard.privacy.audit.gaussian_pair import gaussian_pair_delta, gaussian_pair_epsilon
from fedguard.privacy.audit.gdp import (
    gdp_audit,
    gdp_delta,
    gdp_epsilon,
    gdp_mu_from_rates,
    gdp_threshold_audit,
)
from fedguard.privacy.audit.one_run import (
    default_guess_grid,
    max_certifiable_epsilon,
    one_run_audit,
    one_run_epsilon,
    one_run_guesses,
    one_run_p_value,
    score_guesses,
)
from fedguard.privacy.audit.result import AuditResult

__all__ = [
    "AuditResult",
    "canary_epsilon_estimate",
    "clopper_pearson_epsilon",
    "clopper_pearson_interval",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "default_guess_grid",
    "epsilon_from_rate_bounds",
    "gaussian_pair_delta",
    "gaussian_pair_epsilon",
    "gdp_audit",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu_from_rates",
    "gdp_threshold_audit",
    "max_certifiable_epsilon",
    "one_run_audit",
    "one_run_epsilon",
    "one_run_guesses",
    "one_run_p_value",
    "score_guesses",
    "threshold_audit",
]
