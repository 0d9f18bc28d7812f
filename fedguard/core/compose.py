"""Composition of pre-aggregators with an aggregator (``nnm+trimmed_mean``).

The core applies it to every run, so per-client weights, scores and flags always refer to
clients, never to mixed rows or buckets. Pre-aggregators that expose ``mix(rows, ctx)`` (returning
the mixed ``values`` and the ``mixing`` matrix) are mapped back exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import Aggregator, PreAggregator
from fedguard.core.update_checks import check_updates
from fedguard.errors import ConfigError
from fedguard.types import AggregationContext, AggregationResult


def _row_norms(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=1)


def split_name(name: str) -> tuple[list[str], str]:
    """``"nnm+bucketing+krum"`` → ``(["nnm", "bucketing"], "krum")``."""
    parts = [p.strip() for p in name.split("+")]
    if any(not p for p in parts):
        raise ConfigError(
            f"aggregator name must be pre-aggregators and one aggregator joined by '+'; "
            f"got {name!r}."
        )
    return parts[:-1], parts[-1]


def _component_name(component: object) -> str:
    return getattr(component, "registry_name", "") or type(component).__name__


@dataclass(frozen=True)
class ComposedAggregator(Aggregator):
    """Pre-aggregators applied in order, then an aggregator.

    Rows with NaN/inf are flagged and dropped first (each counted as one of the f Byzantine
    clients). When every pre-aggregator exposes its mixing matrix (all of fedguard's do), the
    aggregator's result is mapped back to the clients through the product C of the mixing
    matrices: ``weights = Cᵀ w`` (each client's effective coefficient in the aggregate when the
    aggregator is a weighted mean of its rows), ``scores`` = the C-weighted average score of the
    rows a client contributed to, and a client is ``flagged`` when every row it contributed to was
    flagged. For a third-party pre-aggregator without a mixing matrix, ``weights`` is ``None``,
    nobody is flagged but faulty rows, and ``scores`` are distances to the aggregate. Client
    weights reach the aggregator only through row-preserving pre-aggregators (clipping, ARC).
    The aggregator's cross-round state is the composite's state.
    """

    pre: tuple[PreAggregator, ...]
    aggregator: Aggregator
    requires_individual_updates: ClassVar[bool] = True

    @property
    def rule_name(self) -> str:
        return "+".join([*map(_component_name, self.pre), _component_name(self.aggregator)])

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        n = n_clients
        for p in self.pre:
            p.check_cohort(n, n_byzantine)
            size = getattr(p, "output_size", None)
            n = size(n) if callable(size) else n
        self.aggregator.check_cohort(n, n_byzantine)

    def __call__(
        self, updates: Tensor, weights: Tensor | None, ctx: AggregationContext
    ) -> AggregationResult:
        x = check_updates(updates, ctx.global_params, self.rule_name)  # (n, d)
        n = x.shape[0]
        w = weights
        self.check_cohort(n, ctx.n_byzantine)
        finite = torch.isfinite(x).all(dim=1)
        keep = finite.nonzero().flatten()
        faulty = tuple(int(i) for i in (~finite).nonzero().flatten())
        if keep.numel() == 0:
            return AggregationResult(
                aggregate=x.new_zeros(x.shape[1]),
                weights=x.new_zeros(n),
                scores=torch.full((n,), float("inf"), dtype=x.dtype),
                flagged=faulty,
                state=dict(ctx.state),
            )
        inner = dataclasses.replace(ctx, n_byzantine=max(ctx.n_byzantine - len(faulty), 0))
        rows = x[keep]  # (m, d)
        mixing: Tensor | None = torch.eye(keep.numel(), dtype=torch.float64)  # (rows, m)
        pass_weights = True
        for p in self.pre:
            mix = getattr(p, "mix", None)  # duck-typed: see defenses.robust.mixing
            if callable(mix):
                mixed = mix(rows, inner)
                rows = mixed.values
                mixing = None if mixing is None else mixed.mixing @ mixing
                pass_weights = pass_weights and bool(getattr(p, "row_preserving", False))
            else:
                rows = p(rows, inner)
                mixing = None
                pass_weights = False
        inner_weights = w[keep] if (w is not None and pass_weights) else None
        try:
            result = self.aggregator(rows, inner_weights, inner)
        except ConfigError:
            if not faulty:
                raise
            # Dropping faulty rows left too few for the rule: fall back to the median.
            result = AggregationResult(
                aggregate=torch.quantile(rows, 0.5, dim=0), state=dict(ctx.state)
            )
        aggregate = result.aggregate.to(x.dtype)

        scores = torch.full((n,), float("inf"), dtype=x.dtype)
        weights_out: Tensor | None = None
        flagged = set(faulty)
        if mixing is not None:
            coeff = mixing.abs()  # (rows, m)
            col = coeff.sum(dim=0)  # (m,)
            if result.scores is not None:
                row_scores = torch.nan_to_num(result.scores.double(), posinf=1e300)
                mapped = (coeff.T @ row_scores) / col.clamp_min(1e-300)
                scores[keep] = torch.where(col > 0, mapped, torch.inf).to(x.dtype)
            else:
                scores[keep] = _row_norms(x[keep] - aggregate[None, :])
            if result.weights is not None:
                weights_out = x.new_zeros(n)
                weights_out[keep] = (mixing.T @ result.weights.double()).to(x.dtype)
            flagged_rows = torch.zeros(mixing.shape[0], dtype=torch.bool)
            flagged_rows[list(result.flagged)] = True
            contributes = coeff > 0  # (rows, m)
            all_flagged = (~contributes | flagged_rows[:, None]).all(dim=0) & contributes.any(0)
            flagged.update(int(keep[j]) for j in all_flagged.nonzero().flatten())
        else:
            scores[keep] = _row_norms(x[keep] - aggregate[None, :])
        return AggregationResult(
            aggregate=aggregate,
            weights=weights_out,
            scores=scores,
            flagged=tuple(sorted(flagged)),
            state=result.state,
        )


@dataclass(frozen=True)
class ComposedAggregatorWithReference(ComposedAggregator):
    """A composition whose aggregator needs the server's reference update (FLTrust)."""

    needs_reference_update: ClassVar[bool] = True


def compose(pre: Sequence[PreAggregator], agg: Aggregator) -> Aggregator:
    """Chain pre-aggregators (applied in order) in front of an aggregator.

    ``compose([], agg)`` returns ``agg`` itself. See :class:`ComposedAggregator` for how weights,
    scores and flags are mapped back to the clients.
    """
    if not pre:
        return agg
    if agg.needs_reference_update:
        return ComposedAggregatorWithReference(pre=tuple(pre), aggregator=agg)
    return ComposedAggregator(pre=tuple(pre), aggregator=agg)
