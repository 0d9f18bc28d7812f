"""Shared driver of the robust aggregators: input checks, faulty rows, cohort bounds.

Every rule in :mod:`defenses.robust` subclasses :class:`RobustAggregator` and implements only
:meth:`RobustAggregator._aggregate` on clean inputs. The driver

* checks the update tensor (2-D, floating, one column per model parameter) and the weights, raising
  a one-sentence :class:`~fedguard.errors.ConfigError` otherwise;
* checks the cohort against the rule's bound (Krum: n > 2f + 2), also a ``ConfigError``;
* treats every row holding NaN or ±inf as a faulty client: it is flagged, gets weight 0 and score
  +inf, and is excluded before the rule runs. Each excluded row is counted as one of the f Byzantine
  clients, so the rule runs on ``n − k`` rows with ``f − k`` (at least 0) tolerated; should that
  leave fewer rows than the rule needs even with f = 0, the coordinate-wise median of the finite
  rows is returned. All rows non-finite → zero aggregate, all flagged. A run never crashes on them.
* fills ``scores`` with each row's distance to the aggregate when the rule has no score of its own,
  so that detection metrics (AUROC) exist for every rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from fedguard.api import Aggregator, Component, require
from fedguard.core.update_checks import check_updates, check_weights
from fedguard.errors import ConfigError
from fedguard.types import AggregationContext, AggregationResult

from .kernels import coordinate_median, row_norms


@dataclass(frozen=True)
class RuleOutput:
    """What a rule computes on the clean rows (row indices local to those rows)."""

    aggregate: Tensor  # (d,)
    weights: Tensor | None = None  # (m,)
    scores: Tensor | None = None  # (m,)
    flagged: tuple[int, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)


def validate_byzantine(value: int | None) -> None:
    """Field check shared by every rule with an ``n_byzantine`` parameter."""
    require(
        value is None or (isinstance(value, int) and value >= 0),
        "n_byzantine",
        "a non-negative integer, or null to use the run's n_byzantine",
    )


def stack_updates(deltas: Sequence[Tensor], client_ids: Sequence[int] | None = None) -> Tensor:
    """Stack flat client updates into ``(n, d)``, naming the first client of the wrong size.

    Raises
    ------
    ConfigError
        If the updates are not all 1-D of the same length.
    """
    if len(deltas) == 0:
        raise ConfigError("updates must contain at least one client update; got none.")
    ids = list(client_ids) if client_ids is not None else list(range(len(deltas)))
    d = deltas[0].numel()
    for cid, delta in zip(ids, deltas, strict=True):
        if delta.dim() != 1 or delta.numel() != d:
            raise ConfigError(
                f"every client update must be a flat vector of {d} parameters; client {cid} sent "
                f"shape {tuple(delta.shape)}."
            )
    return torch.stack(list(deltas))  # (n, d)


class CohortBounded(Component):
    """The cohort bound shared by the robust rules and the pre-aggregators: ``n_byzantine`` from
    the component's own field when set (else the run's), and a one-sentence ``ConfigError`` when a
    round has fewer than :meth:`min_clients` clients."""

    #: What the component is called in error messages.
    component_kind: ClassVar[str] = "aggregator"
    #: The rule's cohort bound in words, for error messages.
    cohort_bound: ClassVar[str] = "at least one client per round"

    def min_clients(self, n_byzantine: int) -> int:
        """Smallest cohort the rule accepts with ``n_byzantine`` tolerated clients."""
        return 1

    def resolve_byzantine(self, run_n_byzantine: int) -> int:
        """The rule's own ``n_byzantine`` field when set, else the run's."""
        own = getattr(self, "n_byzantine", None)
        return int(run_n_byzantine) if own is None else int(own)

    @property
    def rule_name(self) -> str:
        return self.registry_name or type(self).__name__

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        f = self.resolve_byzantine(n_byzantine)
        if n_clients < self.min_clients(f):
            raise ConfigError(
                f"{self.component_kind} {self.rule_name!r} needs {self.cohort_bound} (n clients "
                f"per round, f = n_byzantine); got n = {n_clients}, f = {f}."
            )


@dataclass(frozen=True)
class LinearByzantineBound(CohortBounded):
    """Mixin of the rules whose only parameter is ``n_byzantine`` (f; ``None`` uses the run's) and
    whose cohort bound is linear in f: ``min_clients(f) = byzantine_factor · f + min_clients_at_0``.
    List it before the rule's base class (``class Krum(LinearByzantineBound, RobustAggregator)``).
    """

    byzantine_factor: ClassVar[int]
    min_clients_at_0: ClassVar[int]
    n_byzantine: int | None = None

    def __post_init__(self) -> None:
        validate_byzantine(self.n_byzantine)

    def min_clients(self, n_byzantine: int) -> int:
        return self.byzantine_factor * n_byzantine + self.min_clients_at_0


class RobustAggregator(CohortBounded, Aggregator):
    """Base of the rules in :mod:`defenses.robust` (see the module docstring)."""

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        """The rule on finite ``(m, d)`` rows with ``n_byzantine`` tolerated."""
        raise NotImplementedError  # abstract

    def __call__(
        self, updates: Tensor, weights: Tensor | None, ctx: AggregationContext
    ) -> AggregationResult:
        x = check_updates(updates, ctx.global_params, self.rule_name)  # (n, d)
        n = x.shape[0]
        w = check_weights(weights, n, self.rule_name)
        self.check_cohort(n, ctx.n_byzantine)
        f = self.resolve_byzantine(ctx.n_byzantine)

        finite = torch.isfinite(x).all(dim=1)  # (n,)
        keep = finite.nonzero().flatten()  # (m,)
        faulty = tuple(int(i) for i in (~finite).nonzero().flatten())
        m = keep.numel()
        if m == 0:
            return AggregationResult(
                aggregate=torch.zeros(x.shape[1], dtype=x.dtype, device=x.device),
                weights=torch.zeros(n, dtype=x.dtype, device=x.device),
                scores=torch.full((n,), float("inf"), dtype=x.dtype, device=x.device),
                flagged=faulty,
                state=dict(ctx.state),
            )
        xs = x if m == n else x[keep]  # (m, d)
        ws = w if (w is None or m == n) else w[keep]
        f_left = max(f - len(faulty), 0)
        ids = getattr(ctx, "client_ids", None)
        if m < n and ids is not None and len(ids) == n:  # keep ids aligned with the clean rows
            aligned: dict[str, Any] = {"client_ids": tuple(ids[int(i)] for i in keep)}
            ctx = dataclasses.replace(ctx, **aligned)
        if m < self.min_clients(f_left):
            out = RuleOutput(aggregate=coordinate_median(xs), state=dict(ctx.state))
        else:
            out = self._aggregate(xs, ws, f_left, ctx)
        aggregate = out.aggregate.to(x.dtype)  # (d,)

        scores_local = out.scores
        if scores_local is None:
            scores_local = row_norms(xs - aggregate[None, :])  # (m,)
        scores = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        scores[keep] = scores_local.to(x.dtype)
        weights_out: Tensor | None = None
        if out.weights is not None:
            weights_out = torch.zeros(n, dtype=x.dtype, device=x.device)
            weights_out[keep] = out.weights.to(x.dtype)
        flagged_local = {int(keep[i]) for i in out.flagged}
        flagged = tuple(sorted(flagged_local.union(faulty)))
        return AggregationResult(
            aggregate=aggregate,
            weights=weights_out,
            scores=scores,
            flagged=flagged,
            state=out.state,
        )
