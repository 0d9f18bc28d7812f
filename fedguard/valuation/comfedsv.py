"""ComFedSV: federated Shapley from a low-rank completion of the round × coalition utility matrix.

References
----------
.. [1] Z. Fan, H. Fang, Z. Zhou, J. Pei, M. P. Friedlander, C. Liu, Y. Zhang. "Improving Fairness
   for Data Valuation in Horizontal Federated Learning." ICDE 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.valuation.base import Scores, Valuation, deterministic_scores
from fedguard.valuation.game import Game, RoundGame, all_masks, as_round_game, bits_to_masks
from fedguard.valuation.kernels import exact_shapley


def complete_low_rank(
    observed: Tensor,
    mask: Tensor,
    rank: int,
    regularization: float,
    n_iterations: int,
    generator: torch.Generator,
) -> Tensor:
    """Alternating least squares for ``min Σ_obs (U − WHᵀ)² + λ(‖W‖² + ‖H‖²)``.

    ``observed (R, C)`` with ``mask (R, C)`` bool → completed ``(R, C)`` float64 ``WHᵀ``.
    Every row and column update is a batched ``k × k`` solve.
    """
    rows, cols = observed.shape
    m = mask.to(torch.float64)  # (R, C)
    u = observed.to(torch.float64) * m  # (R, C)
    w = 0.1 * torch.randn(rows, rank, generator=generator, dtype=torch.float64)  # (R, k)
    h = 0.1 * torch.randn(cols, rank, generator=generator, dtype=torch.float64)  # (C, k)
    eye = regularization * torch.eye(rank, dtype=torch.float64)
    for _ in range(n_iterations):
        hh = (h.unsqueeze(2) * h.unsqueeze(1)).reshape(cols, rank * rank)  # (C, k·k)
        gram_w = (m @ hh).reshape(rows, rank, rank) + eye  # (R, k, k)
        w = torch.linalg.solve(gram_w, (u @ h).unsqueeze(-1)).squeeze(-1)  # (R, k)
        ww = (w.unsqueeze(2) * w.unsqueeze(1)).reshape(rows, rank * rank)  # (R, k·k)
        gram_h = (m.T @ ww).reshape(cols, rank, rank) + eye  # (C, k, k)
        h = torch.linalg.solve(gram_h, (u.T @ w).unsqueeze(-1)).squeeze(-1)  # (C, k)
    return w @ h.T


@dataclass(frozen=True)
class ComFedSV(Valuation):
    """Completed federated Shapley value (Fan et al. 2022).

    Row ``r`` of the utility matrix holds ``U_r(S) = v_r(S) − v_r(∅)`` for all ``2^n`` coalitions,
    but only coalitions of round ``r``'s participants are observed (all of them when the round has
    at most ``max_exact_participants``, else ``samples_per_round`` uniform ones). The matrix is
    completed by a rank-``rank`` factorization ``WHᵀ`` (ALS, ridge ``regularization``) and, as in
    the paper, the Shapley value is taken of the completed matrix everywhere: ``φ = Σ_r
    Shapley(Û_r)``, which values clients also in rounds they did not take part in. Deterministic
    given the generator (SE 0).
    """

    rank: int = 3
    regularization: float = 1e-4
    n_iterations: int = 200
    max_players: int = 14
    max_exact_participants: int = 12
    samples_per_round: int = 256

    def __post_init__(self) -> None:
        require(self.rank >= 1, "rank", "at least 1")
        require(self.regularization > 0, "regularization", "positive")
        require(self.n_iterations >= 1, "n_iterations", "at least 1")
        require(1 <= self.max_players <= 16, "max_players", "in 1..16")
        require(self.max_exact_participants >= 1, "max_exact_participants", "at least 1")
        require(self.samples_per_round >= 2, "samples_per_round", "at least 2")

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        rg = as_round_game(game)
        n = rg.n_players
        if n > self.max_players:
            raise ConfigError(
                f"comfedsv completes a matrix with 2**{n} columns for {n} clients, above "
                f"max_players={self.max_players}; use 'fed_shapley' or 'gtg_shapley'."
            )
        observed = torch.zeros(rg.n_rounds, 1 << n, dtype=torch.float64)
        mask = torch.zeros(rg.n_rounds, 1 << n, dtype=torch.bool)
        queries = 0
        for r in range(rg.n_rounds):
            if not rg.participants(r):
                continue  # nobody took part: no values, no observations
            view = rg.round_view(r)
            local = (
                all_masks(view.n_players)
                if view.n_players <= self.max_exact_participants
                else torch.unique(
                    torch.cat(
                        [
                            torch.tensor([0, view.grand_mask]),
                            bits_to_masks(
                                torch.rand(
                                    self.samples_per_round, view.n_players, generator=generator
                                )
                                < 0.5
                            ),
                        ]
                    )
                )
            )
            cols = view.to_global(local)
            values = rg.round_utilities(r, cols)
            queries += int(cols.shape[0])
            observed[r, cols] = values - float(rg.round_utilities(r, [0])[0])
            mask[r, cols] = True
        rank = min(self.rank, rg.n_rounds)
        completed = complete_low_rank(
            observed, mask, rank, self.regularization, self.n_iterations, generator
        )
        values = exact_shapley(completed.sum(dim=0))
        fit_error = float(((completed - observed)[mask]).abs().max())
        return deterministic_scores(
            "comfedsv",
            values,
            n_evaluations=int(mask.sum()),
            n_queries=queries,
            target="shapley",
            evaluation_unit="round-coalition",
            info={"rank": rank, "max_fit_error": fit_error},
        )
