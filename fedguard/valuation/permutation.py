"""Truncated Monte Carlo permutation sampling of Shapley values, with antithetic pairs.

References
----------
.. [1] A. Ghorbani, J. Zou. "Data Shapley: Equitable Valuation of Data for Machine Learning."
   ICML 2019 (truncated Monte Carlo, TMC-Shapley).
.. [2] J. Castro, D. Gómez, J. Tejada. "Polynomial calculation of the Shapley value based on
   sampling." Computers & Operations Research 36(5), 2009.
.. [3] R. Mitchell, J. Cooper, E. Frank, G. Holmes. "Sampling Permutations for Shapley Value
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
    resolve_budget,
    scores_from_units,
    validate_common,
)
from fedguard.valuation.game import Game, QueryTracker, RoundGame, as_game


def random_permutations(count: int, n_players: int, generator: torch.Generator) -> Tensor:
    """``(count, n)`` int64 uniform random permutations of ``0..n−1``."""
    return torch.argsort(torch.rand(count, n_players, generator=generator), dim=1)


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


def antithetic_group(antithetic: bool, remaining: int, n_players: int) -> int:
    """Permutations per bootstrap unit: 2 (a permutation and its reverse) when ``antithetic`` and
    a pair fits in ``remaining`` queries (``n − 1`` per permutation), else 1."""
    return 2 if antithetic and remaining >= 2 * max(n_players - 1, 1) else 1


def permutation_marginals(
    tracker: QueryTracker,
    empty: float,
    grand: float,
    remaining: int,
    group: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Untruncated permutation sampling within ``remaining`` queries.

    As many whole groups of ``group`` permutations (with ``group = 2``, rows ``2k`` and ``2k+1``
    are a permutation and its reverse) as fit at ``n − 1`` queries each (``v(∅)``, ``v(N)`` are
    known). Returns the ``(m, n)`` permutations and the ``(m, n)`` marginals indexed by player.
    """
    n = tracker.n_players
    per_perm = max(n - 1, 1)
    count = (remaining // (per_perm * group)) * group
    perms = random_permutations(count // group, n, generator)  # (m/g, n)
    if group == 2:
        perms = torch.stack([perms, perms.flip(1)], dim=1).reshape(-1, n)  # (m, n)
    masks = prefix_masks(perms)[:, :-1]  # (m, n−1)
    values = tracker.utilities(masks.reshape(-1)).reshape(count, n - 1)
    full = torch.cat([values, torch.full((count, 1), grand, dtype=torch.float64)], dim=1)
    return perms, marginals_from_prefix_values(perms, full, empty)  # (m, n), (m, n)


def truncated_walk(
    tracker: QueryTracker, perm: Tensor, empty: float, grand: float, tolerance: float
) -> Tensor:
    """One TMC permutation: ``(n,)`` marginals, zero after the prefix is within ``tolerance``
    of ``v(N)`` (Ghorbani & Zou's truncation; the truncated positions cost no evaluation)."""
    n = perm.shape[0]
    marginals = torch.zeros(n, dtype=torch.float64)
    previous, mask = empty, 0
    for position, player in enumerate(perm.tolist()):
        mask |= 1 << player
        value = grand if position == n - 1 else tracker.utility(mask)
        marginals[player] = value - previous
        previous = value
        if abs(grand - value) < tolerance:
            break
    return marginals


@dataclass(frozen=True)
class PermutationShapley(Valuation):
    """TMC-Shapley: mean marginal contribution over random permutations.

    ``truncation_tolerance`` is relative to the total gain ``|v(N) − v(∅)|`` (Ghorbani & Zou
    truncate when ``|v(N) − v(prefix)|`` falls below a tolerance; relative to the gain so that it
    works for any utility scale); ``0`` disables truncation (unbiased). ``antithetic`` pairs each
    permutation with its reverse; the bootstrap unit is then the pair. ``budget`` = utility queries,
    ``32·n`` if unset.

    Interval caveat: when a rare prefix carries a large share of a value (e.g. client ``i`` right
    after a random-label client that ruins the model on its own: one permutation in ``n(n−1)``),
    samples that miss it give a low estimate *and* a small SE, and no resampling interval repairs
    that (measured on such a game at ``32·n``: t 0.82, percentile 0.81, BCa 0.82, bootstrap-t
    0.88 coverage). Use ``stratified`` (coalition sizes sampled evenly) when intervals matter.
    """

    budget: int | None = None
    truncation_tolerance: float = 0.0
    antithetic: bool = True
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        validate_common(self.budget, self.n_bootstrap, self.confidence)
        require(0.0 <= self.truncation_tolerance < 1.0, "truncation_tolerance", "in [0, 1)")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        check_budget(budget, n, minimum=n + 1, method="permutation")
        tracker = QueryTracker(g)
        empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
        if n == 1:
            units = torch.tensor([[grand - empty]], dtype=torch.float64)
        else:
            units = self._sample(tracker, empty, grand, budget - 2, generator)
        info = {"n_units": units.shape[0], "antithetic": self.antithetic}
        return scores_from_units(
            "permutation",
            units,
            tracker,
            "shapley",
            self.confidence,
            self.n_bootstrap,
            generator,
            info,
        )

    def _sample(
        self,
        tracker: QueryTracker,
        empty: float,
        grand: float,
        remaining: int,
        generator: torch.Generator,
    ) -> Tensor:
        """``(m, n)`` per-unit marginal estimates (units = antithetic pairs or permutations)."""
        n = tracker.n_players
        per_perm = n - 1  # prefixes 1..n−1 (∅ and N are known)
        group = antithetic_group(self.antithetic, remaining, n)
        if self.truncation_tolerance == 0.0:
            _, marginals = permutation_marginals(tracker, empty, grand, remaining, group, generator)
        else:
            tolerance = self.truncation_tolerance * abs(grand - empty)
            rows: list[Tensor] = []
            while tracker.n_queries + per_perm * group <= remaining + 2 or not rows:
                perm = random_permutations(1, n, generator)[0]
                rows.append(truncated_walk(tracker, perm, empty, grand, tolerance))
                if group == 2:
                    rows.append(truncated_walk(tracker, perm.flip(0), empty, grand, tolerance))
            marginals = torch.stack(rows)
        return marginals.reshape(-1, group, n).mean(dim=1)
