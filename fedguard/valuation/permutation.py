"""Permutation sampling of Shapley values: position-stratified, antithetic, optionally truncated.

Design. Permutations come in blocks: a uniform random ``π`` and its ``n`` cyclic shifts, in random
order. Every shift is itself a uniform permutation (so each one is an unbiased sample), and within a
block every player stands at every position exactly once — stratification by position (Castro et
al. 2017), which removes the largest source of variance in FL games, whether a client comes first
(a solo model) or late (a small change to a good model). Each permutation is paired with its reverse
(antithetic sampling, Mitchell et al. 2022); the prefixes of the reversed shifts are the complements
of the forward ones, both cyclic arcs of ``π``, so a completed block's antithetic half costs no new
evaluation. The shifts of one block are dependent (a player's predecessor sets are nested arcs of
``π``), the blocks independent: the bootstrap resamples blocks (a cluster bootstrap) and the
interval has ``blocks − 1`` degrees of freedom; within a single block it falls back to the pairs.

References
----------
.. [1] A. Ghorbani, J. Zou. "Data Shapley: Equitable Valuation of Data for Machine Learning."
   ICML 2019 (truncated Monte Carlo, TMC-Shapley).
.. [2] J. Castro, D. Gómez, J. Tejada. "Polynomial calculation of the Shapley value based on
   sampling." Computers & Operations Research 36(5), 2009.
.. [3] J. Castro, D. Gómez, E. Molina, J. Tejada. "Improving polynomial estimation of the Shapley
   value by stratified random sampling with optimum allocation." Computers & Operations Research
   82, 2017 (stratification by position).
.. [4] R. Mitchell, J. Cooper, E. Frank, G. Holmes. "Sampling Permutations for Shapley Value
   Estimation." JMLR 23, 2022 (antithetic permutations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.valuation.base import (
    Scores,
    Valuation,
    check_budget,
    deterministic_scores,
    resolve_budget,
    scores_from_clustered_units,
    shift_scores,
    validate_common,
)
from fedguard.valuation.control_variate import MeanGainSurrogate, begin_control_variate
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game, draw_within_budget
from fedguard.valuation.kernels import shapley_size_distribution


def prefix_masks(perms: Tensor) -> Tensor:
    """``(m, n)`` permutations → ``(m, n)`` masks of their prefixes ``{π_1..π_j}``, j = 1..n."""
    return torch.cumsum(torch.ones_like(perms) << perms, dim=1)


def marginals_from_prefix_values(perms: Tensor, prefix_values: Tensor, empty: float) -> Tensor:
    """``(m, n)`` prefix utilities → ``(m, n)`` marginal contributions indexed by player."""
    previous = torch.cat(
        [torch.full((perms.shape[0], 1), empty, dtype=torch.float64), prefix_values[:, :-1]], dim=1
    )
    marginals = torch.empty_like(prefix_values)
    marginals.scatter_(1, perms, prefix_values - previous)
    return marginals


class CyclicPermutations:
    """A stream of uniform permutations, stratified by position in blocks of ``n``: a random ``π``,
    then its cyclic shifts in random order (each player at each position once per block)."""

    def __init__(self, n_players: int, generator: torch.Generator) -> None:
        self.n_players = n_players
        self.generator = generator
        self._queue: list[Tensor] = []
        self.block = -1  # index of the block of the permutation returned last

    def __call__(self) -> Tensor:
        if not self._queue:
            base = torch.randperm(self.n_players, generator=self.generator)
            shifts = torch.randperm(self.n_players, generator=self.generator).tolist()
            self._queue = [base.roll(s) for s in reversed(shifts)]
            self.block += 1
        return self._queue.pop()


def permutation_units(
    tracker: QueryTracker, budget: int, antithetic: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(u, g, n)`` permutations (``g = 2`` with ``antithetic``: a permutation and its reverse)
    whose prefixes fit in ``budget`` distinct evaluations (at most ``budget`` units), and the
    ``(u,)`` block of each unit (the clusters of the bootstrap)."""
    n = tracker.n_players
    stream = CyclicPermutations(n, generator)

    def draw() -> tuple[Tensor, Tensor]:
        perm = stream()
        perms = torch.stack([perm, perm.flip(0)]) if antithetic else perm.reshape(1, -1)  # (g, n)
        unit = torch.cat([perms.reshape(-1), torch.tensor([stream.block])])
        return unit, prefix_masks(perms)[:, :-1]

    units = draw_within_budget(tracker, budget, draw, max_units=budget)
    if not units:
        return torch.zeros(0, 2 if antithetic else 1, n, dtype=torch.int64), torch.zeros(0)
    stacked = torch.stack(units)  # (u, g·n + 1)
    return stacked[:, :-1].reshape(len(units), -1, n), stacked[:, -1]


def sampled_marginals(tracker: QueryTracker, perms: Tensor, empty: float, grand: float) -> Tensor:
    """``(m, n)`` marginals of ``(m, n)`` permutations, all prefixes evaluated in one batch."""
    m, n = perms.shape
    values = tracker.utilities(prefix_masks(perms)[:, :-1].reshape(-1)).reshape(m, n - 1)
    full = torch.cat([values, torch.full((m, 1), grand, dtype=torch.float64)], dim=1)
    return marginals_from_prefix_values(perms, full, empty)


def truncated_walk(
    tracker: QueryTracker, perm: Tensor, empty: float, grand: float, tolerance: float
) -> Tensor:
    """One TMC permutation on the game's own utilities: ``(n,)`` marginals, zero after the prefix
    is within ``tolerance`` of ``v(N)`` (Ghorbani & Zou's truncation; truncated positions cost no
    evaluation)."""
    n = perm.shape[0]
    marginals = torch.zeros(n, dtype=torch.float64)
    previous, mask = empty, 0
    for position, player in enumerate(perm.tolist()):
        mask |= 1 << player
        if position == n - 1:
            value = grand
        else:
            value = float(tracker.raw_utilities(torch.tensor([mask]))[0])
        marginals[player] = value - previous
        previous = value
        if abs(grand - value) < tolerance:
            break
    return marginals


@dataclass(frozen=True)
class PermutationShapley(Valuation):
    """Shapley values as the mean marginal contribution over random permutations (TMC-Shapley).

    ``budget`` = distinct utility evaluations (``32·n`` if unset); whole antithetic pairs are drawn
    while their prefixes fit. ``control_variate`` estimates the residual of the FedAvg first-order
    surrogate (:mod:`fedguard.valuation.control_variate`; unbiased, ``n + 1`` evaluations).
    ``truncation_tolerance`` is relative to the total gain ``|v(N) − v(∅)|`` (Ghorbani & Zou
    truncate when ``|v(N) − v(prefix)|`` falls below a tolerance; relative so that it works on any
    utility scale; the criterion uses the game's own utilities, and a truncated client's residual
    marginal is minus the surrogate's); ``0`` disables truncation (unbiased).

    Interval caveat: when a rare prefix carries a large share of a value (client ``i`` right after
    a client that ruins any model on its own), samples that miss it give a low estimate *and* a
    small SE; position stratification makes such prefixes appear once per block, which mitigates
    this.
    """

    budget: int | None = None
    truncation_tolerance: float = 0.0
    antithetic: bool = True
    control_variate: bool = True
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        validate_common(self.budget, self.n_bootstrap, self.confidence)
        require(0.0 <= self.truncation_tolerance < 1.0, "truncation_tolerance", "in [0, 1)")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        check_budget(budget, n, minimum=self.minimum_budget(n), method="permutation")
        tracker = QueryTracker(g)
        raw_empty, raw_grand = tracker.raw_utilities(torch.tensor([0, g.grand_mask])).tolist()
        surrogate = begin_control_variate(tracker) if self.control_variate and n > 1 else None
        if n == 1:  # one permutation, exact
            value = torch.tensor([raw_grand - raw_empty], dtype=torch.float64)
            return deterministic_scores("permutation", value, 2, 2, "shapley", self.confidence)
        if self.truncation_tolerance == 0.0:
            perms, blocks = permutation_units(tracker, budget, self.antithetic, generator)
            empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
            marginals = sampled_marginals(tracker, perms.reshape(-1, n), empty, grand)
            units = marginals.reshape(perms.shape).mean(dim=1)  # (u, n)
        else:
            units, blocks = self._truncated(
                tracker, budget, raw_empty, raw_grand, surrogate, generator
            )
        info = {"n_units": units.shape[0], "antithetic": self.antithetic, "design": "cyclic"}
        scores = scores_from_clustered_units(
            "permutation",
            units,
            blocks,
            tracker,
            "shapley",
            self.confidence,
            self.n_bootstrap,
            generator,
            info,
        )
        if surrogate is None:
            return scores
        return shift_scores(scores, surrogate.semivalue(shapley_size_distribution(n)))

    def minimum_budget(self, n: int) -> int:
        """Distinct evaluations of ``v(∅)``, ``v(N)``, the surrogate's solo utilities and one
        unit's prefixes (a solo prefix is shared with the surrogate)."""
        use_cv = self.control_variate and n > 1
        group = 2 if self.antithetic else 1
        first_unit = group * (n - 1) - (group if use_cv else 0)
        return min(2 + (n if use_cv else 0) + max(first_unit, 0), 1 << n)

    def _truncated(
        self,
        tracker: QueryTracker,
        budget: int,
        empty: float,
        grand: float,
        surrogate: MeanGainSurrogate | None,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """``(u, n)`` unit estimates of TMC walks, each started while its untruncated prefixes
        would still fit in ``budget`` (the walks are lazy, so truncation buys more of them), and
        the ``(u,)`` block of each."""
        n = tracker.n_players
        tolerance = self.truncation_tolerance * abs(grand - empty)
        stream = CyclicPermutations(n, generator)
        rows: list[Tensor] = []
        blocks: list[int] = []
        while len(rows) < budget:
            perm = stream()
            perms = torch.stack([perm, perm.flip(0)]) if self.antithetic else perm.reshape(1, -1)
            if (
                rows
                and tracker.n_distinct + len(tracker.new_cost(prefix_masks(perms)[:, :-1], set()))
                > budget
            ):
                break
            walks = torch.stack(
                [truncated_walk(tracker, p, empty, grand, tolerance) for p in perms]
            )
            if surrogate is not None:
                walks = walks - surrogate.marginals(perms)
            rows.append(walks.mean(dim=0))
            blocks.append(stream.block)
        return torch.stack(rows), torch.tensor(blocks)
