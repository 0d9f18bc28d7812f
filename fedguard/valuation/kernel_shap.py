"""KernelSHAP: Shapley values as a constrained weighted least-squares regression.

References
----------
.. [1] S. M. Lundberg, S.-I. Lee. "A Unified Approach to Interpreting Model Predictions."
   NeurIPS 2017.
.. [2] I. Covert, S.-I. Lee. "Improving KernelSHAP: Practical Shapley Value Estimation via Linear
   Regression." AISTATS 2021 (paired sampling, closed-form constrained solution).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.valuation.base import (
    SampledValuation,
    Scores,
    bootstrap_indices,
    check_budget,
    deterministic_scores,
    resolve_budget,
    sampled_scores,
    shift_scores,
)
from fedguard.valuation.control_variate import begin_control_variate
from fedguard.valuation.game import (
    Game,
    QueryTracker,
    RoundGame,
    as_game,
    draw_within_budget,
    mask_bits,
)
from fedguard.valuation.kernels import shapley_size_distribution


def shapley_kernel_sizes(n_players: int) -> Tensor:
    """``(n−1,)`` probabilities of coalition sizes ``1..n−1`` under the Shapley kernel,
    ``∝ (n−1)/(k(n−k))`` (per-coalition weight times ``C(n, k)``)."""
    k = torch.arange(1, n_players, dtype=torch.float64)
    w = 1.0 / (k * (n_players - k))
    return w / w.sum()


def constrained_solution(gram: Tensor, moment: Tensor, total: float) -> Tensor:
    """Solve ``min φᵀAφ − 2bᵀφ`` s.t. ``1ᵀφ = total`` for batches ``(..., n, n)``, ``(..., n)``.

    Uses the KKT system ``[[A, 1], [1ᵀ, 0]] [φ; λ] = [b; total]`` by least squares, which stays
    defined when the sampled ``A`` is rank-deficient (few samples).
    """
    n = gram.shape[-1]
    batch = gram.shape[:-2]
    kkt = torch.zeros((*batch, n + 1, n + 1), dtype=torch.float64)
    kkt[..., :n, :n] = gram
    kkt[..., :n, n] = 1.0
    kkt[..., n, :n] = 1.0
    rhs = torch.zeros((*batch, n + 1, 1), dtype=torch.float64)
    rhs[..., :n, 0] = moment
    rhs[..., n, 0] = total
    solution = torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution
    return solution[..., :n, 0]


def size_masks(n_players: int, size: int) -> Tensor:
    """``(C(n, k),)`` int64 masks of every coalition of ``size`` players (``torch.combinations``
    would build an ``n^k`` grid first)."""
    masks = [sum(1 << i for i in combo) for combo in itertools.combinations(range(n_players), size)]
    return torch.tensor(masks, dtype=torch.int64)


def enumerated_sizes(n_players: int, budget_left: int) -> list[int]:
    """Sizes whose coalitions are all evaluated, as in the ``shap`` library: the pairs ``(k, n−k)``
    carry the largest kernel weights, so from the outside in, each pair is enumerated while its
    coalitions fit in ``budget_left`` and leave room for a sampled pair (unless it is the last)."""
    sizes: list[int] = []
    for k in range(1, n_players // 2 + 1):
        group = [k] if 2 * k == n_players else [k, n_players - k]
        cost = sum(math.comb(n_players, size) for size in group)
        last = k == n_players // 2
        if cost > budget_left - (0 if last else 2):
            break
        sizes += group
        budget_left -= cost
    return sizes


@dataclass(frozen=True)
class KernelShap(SampledValuation):
    """KernelSHAP with enumerated extreme sizes, paired sampling and the efficiency constraint.

    Solves ``min E_p[(v(S) − v(∅) − Σ_{i∈S} φ_i)²]`` subject to ``Σ φ = v(N) − v(∅)`` with ``p``
    the Shapley kernel, using ``Â = E_p[zzᵀ]`` and ``b̂ = E_p[z(v(S) − v(∅))]`` (the original
    KernelSHAP, exact for additive games). As in the ``shap`` library, the sizes with the largest
    kernel mass (``1`` and ``n−1``, then ``2`` and ``n−2``, …) are enumerated while the budget
    allows (:func:`enumerated_sizes`); the remaining sizes are sampled from the kernel restricted
    to them, each ``S`` with its complement (Covert & Lee's paired sampling). Bootstrap unit: a
    sampled pair (the enumerated part is fixed). ``budget`` = distinct utility evaluations;
    ``control_variate`` estimates the residual of the FedAvg first-order surrogate.
    """

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        use_cv = self.control_variate and n > 1
        minimum = min((n + 2 if use_cv else 2) + 2, 1 << n)
        check_budget(budget, n, minimum=minimum, method="kernel_shap")
        tracker = QueryTracker(g)
        surrogate = begin_control_variate(tracker) if use_cv else None
        empty, grand = tracker.utilities(torch.tensor([0, g.grand_mask])).tolist()
        if n == 1:
            value = torch.tensor([grand - empty], dtype=torch.float64)
            replicates = value.reshape(1, 1).expand(2, 1)
            return sampled_scores(
                "kernel_shap", value, replicates, 2, 2, 2, "shapley", self.confidence
            )
        size_p = shapley_kernel_sizes(n)  # (n−1,) over sizes 1..n−1
        enumerated = enumerated_sizes(n, budget - tracker.n_distinct + (n if use_cv else 0))
        gram = torch.zeros(n, n, dtype=torch.float64)
        moment = torch.zeros(n, dtype=torch.float64)
        for size in enumerated:
            masks = size_masks(n, size)
            z = mask_bits(masks, n).to(torch.float64)  # (C, n)
            y = tracker.utilities(masks) - empty  # (C,)
            weight = float(size_p[size - 1]) / masks.shape[0]
            gram += weight * z.T @ z
            moment += weight * z.T @ y
        rest = [k for k in range(1, n) if k not in enumerated]
        if not rest:
            estimate = constrained_solution(gram, moment, grand - empty)
            scores = deterministic_scores(
                "kernel_shap",
                estimate,
                tracker.n_distinct,
                tracker.n_queries,
                "shapley",
                self.confidence,
                info={"enumerated_sizes": enumerated},
            )
        else:
            problem = (gram, moment, empty, grand)
            scores = self._sampled(tracker, problem, enumerated, rest, budget, generator)
        if surrogate is None:
            return scores
        return shift_scores(scores, surrogate.semivalue(shapley_size_distribution(n)))

    def _sampled(
        self,
        tracker: QueryTracker,
        problem: tuple[Tensor, Tensor, float, float],
        enumerated: list[int],
        rest: list[int],
        budget: int,
        generator: torch.Generator,
    ) -> Scores:
        """The sampled part: pairs of the remaining sizes added to the enumerated ``Â``, ``b̂``
        (``problem`` = enumerated ``gram``, ``moment``, ``v(∅)``, ``v(N)``)."""
        gram, moment, empty, grand = problem
        n = tracker.n_players
        size_p = shapley_kernel_sizes(n)
        rest_p = size_p[torch.tensor(rest) - 1]  # (r,)
        rest_mass = float(rest_p.sum())
        grand_mask = (1 << n) - 1

        def draw() -> tuple[Tensor, Tensor]:
            size = rest[int(torch.multinomial(rest_p, 1, generator=generator))]
            order = torch.randperm(n, generator=generator)
            mask = int((torch.ones(size, dtype=torch.int64) << order[:size]).sum())
            pair = torch.tensor([mask, grand_mask ^ mask])
            return pair, pair

        pairs = torch.stack(draw_within_budget(tracker, budget, draw, max_units=budget))  # (u, 2)
        n_pairs = int(pairs.shape[0])
        z = mask_bits(pairs.T.reshape(-1), n).to(torch.float64).reshape(2, n_pairs, n)
        y = (tracker.utilities(pairs.T.reshape(-1)) - empty).reshape(2, n_pairs)
        outer = torch.einsum("pui,puj->uij", z, z) / 2.0  # (u, n, n) per-pair mean of zzᵀ
        cross = torch.einsum("pui,pu->ui", z, y) / 2.0  # (u, n) per-pair mean of z·y
        estimate = constrained_solution(
            gram + rest_mass * outer.mean(0), moment + rest_mass * cross.mean(0), grand - empty
        )
        idx = bootstrap_indices(n_pairs, self.n_bootstrap, generator)  # (B, u)
        replicates = constrained_solution(
            gram + rest_mass * outer[idx].mean(1),
            moment + rest_mass * cross[idx].mean(1),
            grand - empty,
        )
        return sampled_scores(
            "kernel_shap",
            estimate,
            replicates,
            n_units=n_pairs,
            n_evaluations=tracker.n_distinct,
            n_queries=tracker.n_queries,
            target="shapley",
            confidence=self.confidence,
            info={"enumerated_sizes": enumerated},
        )
