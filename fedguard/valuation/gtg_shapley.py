"""GTG-Shapley: guided truncation gradient Shapley on per-round reconstructed utilities.

References
----------
.. [1] Z. Liu, Y. Chen, H. Yu, Y. Liu, L. Cui. "GTG-Shapley: Efficient and Accurate Participant
   Contribution Evaluation in Federated Learning." ACM TIST 13(4), 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.valuation.base import (
    Scores,
    Valuation,
    bootstrap_mean,
    check_budget,
    sampled_scores,
    validate_common,
)
from fedguard.valuation.game import Game, RoundGame, as_round_game


def guided_permutations(leaders: Tensor, players: Tensor, generator: torch.Generator) -> Tensor:
    """``(m, m)`` permutations of ``players``: row ``j`` leads with ``leaders[j]``."""
    m = players.shape[0]
    keys = torch.rand(m, m, generator=generator)  # (m, m)
    keys[torch.arange(m), leaders] = -1.0  # the leader sorts first
    return players[torch.argsort(keys, dim=1)]


@dataclass(frozen=True)
class GTGShapley(Valuation):
    """Per-round Shapley by guided, truncated permutation sampling; summed over rounds.

    For each round ``r`` (MR utilities ``v_r``): a round whose total gain ``|v_r(P_r) − v_r(∅)|`` is
    at most ``round_gain_tolerance`` is skipped (between-round truncation, its values are 0);
    otherwise sweeps of ``m`` permutations are drawn, each participant leading one permutation in
    turn (guided sampling); a permutation stops once ``|v_r(P_r) − v_r(prefix)|`` is below
    ``truncation_tolerance`` (within-round truncation, remaining marginals 0); sweeps stop when the
    running means change by less than ``convergence_tolerance`` (relative L1) after at least
    ``min_sweeps``, at ``max_sweeps``, or when the round's share of ``budget`` (round-utility
    queries, split evenly over rounds; unlimited if unset) is spent. Tolerances are absolute, as in
    the paper; every non-skipped round gets at least one permutation even when its share of the
    budget is smaller. Bootstrap: permutations within each round, replicates summed over rounds.
    """

    budget: int | None = None
    round_gain_tolerance: float = 1e-4
    truncation_tolerance: float = 1e-4
    convergence_tolerance: float = 0.05
    min_sweeps: int = 2
    max_sweeps: int = 50
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        validate_common(self.budget, self.n_bootstrap, self.confidence)
        require(self.round_gain_tolerance >= 0, "round_gain_tolerance", "non-negative")
        require(self.truncation_tolerance >= 0, "truncation_tolerance", "non-negative")
        require(self.convergence_tolerance > 0, "convergence_tolerance", "positive")
        require(self.min_sweeps >= 1, "min_sweeps", "at least 1")
        require(self.max_sweeps >= self.min_sweeps, "max_sweeps", "at least min_sweeps")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        rg = as_round_game(game)
        n = rg.n_players
        if self.budget is not None:
            check_budget(self.budget, n, minimum=n, method="gtg_shapley")
        round_budget = None if self.budget is None else max(self.budget // rg.n_rounds, 2)
        total = torch.zeros(n, dtype=torch.float64)
        replicates = torch.zeros(self.n_bootstrap, n, dtype=torch.float64)
        queries, skipped, min_units = 0, 0, None
        seen: set[tuple[int, int]] = set()
        for r in range(rg.n_rounds):
            rows, used = self._round(rg, r, round_budget, generator, seen)
            queries += used
            if rows is None:
                skipped += 1
                continue
            total += rows.mean(dim=0)
            replicates += bootstrap_mean(rows, self.n_bootstrap, generator)
            min_units = rows.shape[0] if min_units is None else min(min_units, rows.shape[0])
        return sampled_scores(
            "gtg_shapley",
            total,
            replicates,
            n_units=min_units if min_units is not None else 2,
            n_evaluations=len(seen),
            n_queries=queries,
            target="shapley",
            confidence=self.confidence,
            evaluation_unit="round-coalition",
            info={"skipped_rounds": skipped},
        )

    def _round(
        self,
        rg: RoundGame,
        r: int,
        round_budget: int | None,
        generator: torch.Generator,
        seen: set[tuple[int, int]],
    ) -> tuple[Tensor | None, int]:
        players = torch.tensor(rg.participants(r), dtype=torch.int64)  # (m,)
        m, n = players.shape[0], rg.n_players
        full = int((torch.ones_like(players) << players).sum())
        empty, grand = rg.round_utilities(r, [0, full]).tolist()
        seen.update({(r, 0), (r, full)})
        used = 2
        if abs(grand - empty) <= self.round_gain_tolerance or m == 0:
            return None, used
        rows: list[Tensor] = []
        previous_mean: Tensor | None = None
        for sweep in range(self.max_sweeps):
            perms = guided_permutations(torch.arange(m), players, generator)  # (m, m)
            for perm in perms:
                if round_budget is not None and rows and used + (m - 1) > round_budget:
                    break
                marginals = torch.zeros(n, dtype=torch.float64)
                prev, mask = empty, 0
                for position, player in enumerate(perm.tolist()):
                    if abs(grand - prev) < self.truncation_tolerance:
                        break  # within-round truncation: the rest contribute 0
                    mask |= 1 << player
                    if position == m - 1:
                        value = grand
                    else:
                        value = float(rg.round_utilities(r, [mask])[0])
                        used += 1
                        seen.add((r, mask))
                    marginals[player] = value - prev
                    prev = value
                rows.append(marginals)
            else:
                mean = torch.stack(rows).mean(dim=0)
                if previous_mean is not None and sweep + 1 >= self.min_sweeps:
                    change = (mean - previous_mean).abs().sum() / mean.abs().sum().clamp(min=1e-12)
                    if float(change) < self.convergence_tolerance:
                        break
                previous_mean = mean
                continue
            break  # budget spent inside the sweep
        return torch.stack(rows), used
