"""The valuation plugin base class, its result type and shared statistics helpers.

Uncertainty convention (every estimator): the standard error is the standard deviation of
``n_bootstrap`` bootstrap replicates of the estimate, resampling the estimator's independent
sampling units (permutations, antithetic pairs, coalitions, rounds) with replacement; the interval
is ``value ± t_{m−1, (1+confidence)/2} · SE`` with ``m`` the number of units (a Student-t interval,
which keeps its nominal coverage better than bootstrap percentiles when ``m`` is small).
Deterministic methods (``exact``, ``leave_one_out``, exact per-round values) report ``SE = 0`` and a
point interval: they carry no sampling error (their bias, if any, is a property of the game they
value).

References
----------
.. [1] B. Efron, R. Tibshirani. "An Introduction to the Bootstrap." Chapman & Hall, 1993.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from scipy import stats
from torch import Tensor

from fedguard.api import Component
from fedguard.errors import ConfigError
from fedguard.valuation.game import Game, QueryTracker, RoundGame


@dataclass(frozen=True)
class Scores:
    """Per-client values with uncertainty and cost.

    ``target`` names what is estimated (``shapley``, ``banzhaf``, ``beta(16,1)``, ``leave_one_out``,
    ``proxy``); ``n_queries`` counts utility requests, ``n_evaluations`` the distinct
    coalitions they touched (the cost with a cold cache); ``evaluation_unit`` says whether
    one evaluation is a coalition of the whole game or one round's coalition (one model evaluation).
    """

    method: str
    values: Tensor  # (n,) float64
    std_errors: Tensor  # (n,) float64
    lower: Tensor  # (n,) float64
    upper: Tensor  # (n,) float64
    n_evaluations: int
    n_queries: int
    target: str = "shapley"
    confidence: float = 0.95
    evaluation_unit: str = "coalition"
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_players(self) -> int:
        return int(self.values.shape[0])

    def ranks(self) -> Tensor:
        """``(n,)`` int64 rank of each client, 1 = largest value (ties broken by client id)."""
        order = torch.argsort(-self.values, stable=True)  # (n,)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(1, self.n_players + 1)
        return ranks

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "values": self.values.tolist(),
            "std_errors": self.std_errors.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "confidence": self.confidence,
            "n_evaluations": self.n_evaluations,
            "n_queries": self.n_queries,
            "evaluation_unit": self.evaluation_unit,
            "info": {k: _jsonable(v) for k, v in self.info.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    return value


class Valuation(Component):
    """A contribution estimator: ``fit(game, generator) -> Scores``."""

    #: What the estimator targets (see :class:`Scores`).
    target: ClassVar[str] = "shapley"

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class SampledValuation(Valuation):
    """Base of the sampling estimators whose only parameters are the ``budget`` of distinct utility
    evaluations (``None``: :func:`resolve_budget`'s default), ``n_bootstrap``, the interval
    ``confidence`` (checked by :func:`validate_common`) and ``control_variate`` (estimate the
    residual of the FedAvg first-order surrogate, :mod:`fedguard.valuation.control_variate`)."""

    budget: int | None = None
    n_bootstrap: int = 200
    confidence: float = 0.95
    control_variate: bool = True

    def __post_init__(self) -> None:
        validate_common(self.budget, self.n_bootstrap, self.confidence)


# --------------------------------------------------------------------------------------------
# Helpers


def check_budget(budget: int, n_players: int, minimum: int, method: str) -> None:
    """Refuse budgets below ``n`` and below the method's own minimum, in one sentence."""
    if budget < n_players:
        raise ConfigError(
            f"budget must be at least the number of clients ({n_players}) for {method}; "
            f"got {budget}."
        )
    if budget < minimum:
        raise ConfigError(
            f"budget must be at least {minimum} utility evaluations for {method} with "
            f"{n_players} clients; got {budget}."
        )


def deterministic_scores(
    method: str,
    values: Tensor,
    n_evaluations: int,
    n_queries: int,
    target: str,
    confidence: float = 0.95,
    evaluation_unit: str = "coalition",
    info: Mapping[str, Any] | None = None,
) -> Scores:
    """Scores with zero standard error and point intervals."""
    values = values.to(torch.float64)
    return Scores(
        method=method,
        values=values,
        std_errors=torch.zeros_like(values),
        lower=values.clone(),
        upper=values.clone(),
        n_evaluations=n_evaluations,
        n_queries=n_queries,
        target=target,
        confidence=confidence,
        evaluation_unit=evaluation_unit,
        info=dict(info or {}),
    )


def bootstrap_indices(n_units: int, n_bootstrap: int, generator: torch.Generator) -> Tensor:
    """``(n_bootstrap, n_units)`` int64 resampling indices (with replacement)."""
    return torch.randint(n_units, (n_bootstrap, n_units), generator=generator)


def bootstrap_mean(units: Tensor, n_bootstrap: int, generator: torch.Generator) -> Tensor:
    """Bootstrap replicates of the mean of ``(m, n)`` per-unit estimates → ``(B, n)``."""
    idx = bootstrap_indices(units.shape[0], n_bootstrap, generator)  # (B, m)
    return units[idx].mean(dim=1)


def interval_from_replicates(
    estimate: Tensor, replicates: Tensor, n_units: int, confidence: float
) -> tuple[Tensor, Tensor, Tensor]:
    """SE = std of ``(B, n)`` replicates; interval ``estimate ± t_{m−1} · SE``.

    With fewer than two units the uncertainty is unknown: SE and half-width are ``inf``.
    """
    if n_units < 2:
        inf = torch.full_like(estimate, math.inf)
        return inf, estimate - inf, estimate + inf
    se = replicates.std(dim=0, correction=1)  # (n,)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df=n_units - 1))
    return se, estimate - t * se, estimate + t * se


def sampled_scores(
    method: str,
    estimate: Tensor,
    replicates: Tensor,
    n_units: int,
    n_evaluations: int,
    n_queries: int,
    target: str,
    confidence: float,
    evaluation_unit: str = "coalition",
    info: Mapping[str, Any] | None = None,
) -> Scores:
    se, lower, upper = interval_from_replicates(estimate, replicates, n_units, confidence)
    return Scores(
        method=method,
        values=estimate.to(torch.float64),
        std_errors=se,
        lower=lower,
        upper=upper,
        n_evaluations=n_evaluations,
        n_queries=n_queries,
        target=target,
        confidence=confidence,
        evaluation_unit=evaluation_unit,
        info=dict(info or {}),
    )


def scores_from_units(
    method: str,
    units: Tensor,
    tracker: QueryTracker,
    target: str,
    confidence: float,
    n_bootstrap: int,
    generator: torch.Generator,
    info: Mapping[str, Any] | None = None,
) -> Scores:
    """Scores of an estimator that averages ``(m, n)`` independent per-unit estimates: the mean,
    with the bootstrap SE and Student-t interval over the ``m`` units; cost from ``tracker``."""
    clusters = torch.arange(units.shape[0])  # every unit its own cluster
    return scores_from_clustered_units(
        method, units, clusters, tracker, target, confidence, n_bootstrap, generator, info
    )


def shift_scores(scores: Scores, shift: Tensor) -> Scores:
    """``scores`` of a residual game plus the exact value ``shift`` of the control variate: the
    values and interval ends move, the standard errors stay (``shift`` has no sampling error)."""
    return replace(
        scores,
        values=scores.values + shift,
        lower=scores.lower + shift,
        upper=scores.upper + shift,
        info={**scores.info, "control_variate": "mean_gain"},
    )


def scores_from_clustered_units(
    method: str,
    units: Tensor,
    clusters: Tensor,
    tracker: QueryTracker,
    target: str,
    confidence: float,
    n_bootstrap: int,
    generator: torch.Generator,
    info: Mapping[str, Any] | None = None,
) -> Scores:
    """Scores of ``(m, n)`` unit estimates drawn in dependent groups (``clusters``, ``(m,)`` int64
    ids ``0..c−1``; the groups themselves independent): the mean, the cluster bootstrap (whole
    groups resampled; ratio of resampled sums to resampled counts) and a Student-t interval with
    ``c − 1`` degrees of freedom; cost from ``tracker``. With a single group of several units it
    falls back to the units (approximate: ``info["interval"]`` says so)."""
    extra = dict(info or {})
    n_clusters = int(clusters.max()) + 1 if clusters.numel() else 0
    if n_clusters < 2 <= units.shape[0]:
        clusters, n_clusters = torch.arange(units.shape[0]), units.shape[0]
        extra["interval"] = "units of one block (approximate)"
    sums = torch.zeros(n_clusters, units.shape[1], dtype=torch.float64)
    sums.index_add_(0, clusters, units)  # (c, n)
    counts = torch.bincount(clusters, minlength=n_clusters).to(torch.float64)  # (c,)
    idx = bootstrap_indices(n_clusters, n_bootstrap, generator)  # (B, c)
    replicates = sums[idx].sum(dim=1) / counts[idx].sum(dim=1, keepdim=True)  # (B, n)
    return sampled_scores(
        method,
        units.mean(dim=0),
        replicates,
        n_units=n_clusters,
        n_evaluations=tracker.n_distinct,
        n_queries=tracker.n_queries,
        target=target,
        confidence=confidence,
        info={**extra, "n_clusters": n_clusters},
    )


def validate_common(budget: int | None, n_bootstrap: int, confidence: float) -> None:
    """Field checks shared by the sampling estimators."""
    if budget is not None and budget < 1:
        raise ConfigError(f"budget must be a positive number of utility evaluations; got {budget}.")
    if n_bootstrap < 2:
        raise ConfigError(f"n_bootstrap must be at least 2; got {n_bootstrap}.")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence}.")


def resolve_budget(budget: int | None, n_players: int, per_player: int = 32) -> int:
    """The budget, or ``per_player · n`` distinct utility evaluations when none is given."""
    return per_player * n_players if budget is None else budget
