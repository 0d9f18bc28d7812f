"""Stratified Shapley estimation by (client, coalition size) with sample reuse.

References
----------
.. [1] P. Kolpaczki, V. Bengs, M. Muschalik, E. Hüllermeier. "Approximating the Shapley Value
   without Marginal Contributions." AAAI 2024 (Stratified SVARM).
.. [2] S. Maleki, L. Tran-Thanh, G. Hines, T. Rahwan, A. Rogers. "Bounding the Estimation Error of
   Sampling-based Shapley Value Approximation." arXiv:1306.4265, 2013 (stratification by size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.valuation.base import (
    SampledValuation,
    Scores,
    bootstrap_indices,
    check_budget,
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
    bits_to_masks,
    draw_within_budget,
)
from fedguard.valuation.kernels import shapley_size_distribution


def exact_size_coalitions(n_players: int) -> Tensor:
    """``(2n+2,)`` masks of sizes 0, 1, n−1 and n (their strata are computed exactly)."""
    grand = (1 << n_players) - 1
    singles = torch.ones(n_players, dtype=torch.int64) << torch.arange(n_players)
    masks = torch.cat([torch.tensor([0, grand]), singles, grand ^ singles])
    return torch.unique(masks)


def warmup_coalitions(n_players: int, generator: torch.Generator) -> Tensor:
    """Masks covering every middle stratum at least once (Kolpaczki et al.'s warm-up).

    For each size ``k ∈ 2..n−2``: a random permutation cut into blocks of ``k`` (the last block
    filled up with other random players) puts every player in some size-``k`` coalition; the
    complements of blocks of ``n−k`` leave every player out of some size-``k`` coalition.
    """
    masks: list[Tensor] = []
    grand = (1 << n_players) - 1
    for k in range(2, n_players - 1):
        for block, complement in ((k, False), (n_players - k, True)):
            n_blocks = math.ceil(n_players / block)
            perm = torch.randperm(n_players, generator=generator)
            # pad the permutation with players not in the last block, in random order
            extra = n_blocks * block - n_players
            last = set(perm[(n_blocks - 1) * block :].tolist())
            others = torch.tensor([p for p in perm.tolist() if p not in last], dtype=torch.int64)
            pad = others[torch.randperm(others.shape[0], generator=generator)[:extra]]
            blocks = torch.cat([perm, pad]).reshape(n_blocks, block)  # (b, block)
            block_masks = (torch.ones_like(blocks) << blocks).sum(dim=1)
            masks.append(grand ^ block_masks if complement else block_masks)
    return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.int64)


def random_middle_coalitions(count: int, n_players: int, generator: torch.Generator) -> Tensor:
    """``(count,)`` masks: size uniform on ``2..n−2``, then a uniform coalition of that size."""
    sizes = torch.randint(2, n_players - 1, (count,), generator=generator)  # (c,)
    ranks = torch.argsort(torch.argsort(torch.rand(count, n_players, generator=generator), 1), 1)
    return bits_to_masks(ranks < sizes.reshape(-1, 1))


def strata_sums(bits: Tensor, sizes: Tensor, values: Tensor, weights: Tensor) -> Tensor:
    """Weighted sums and counts per stratum.

    ``bits (m, n)``, ``sizes (m,)``, ``values (m,)``, ``weights (B, m)`` → ``(B, 4, n, n+1)``:
    plus sums, plus counts (coalitions ``A ∋ i`` of size ``k``), minus sums, minus counts
    (``A ∌ i`` of size ``k``), indexed ``[i, k]``.
    """
    n = bits.shape[1]
    inside = bits.to(torch.float64)  # (m, n)
    onehot = torch.nn.functional.one_hot(sizes, n + 1).to(torch.float64)  # (m, n+1)
    wv = weights * values  # (B, m)
    return torch.stack(
        [
            torch.einsum("bm,mi,mk->bik", wv, inside, onehot),
            torch.einsum("bm,mi,mk->bik", weights, inside, onehot),
            torch.einsum("bm,mi,mk->bik", wv, 1.0 - inside, onehot),
            torch.einsum("bm,mi,mk->bik", weights, 1.0 - inside, onehot),
        ],
        dim=1,
    )


def shapley_from_strata(sums: Tensor, fallback: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(B, 4, n, n+1)`` strata sums → ``(B, n)`` values and the ``(B, 2, n, n+1)`` stratum means.

    ``φ_i = (1/n) Σ_{s=0}^{n−1} (mean_{|A|=s+1, i∈A} v(A) − mean_{|A|=s, i∉A} v(A))``. An empty
    stratum (possible only in a bootstrap replicate) takes its mean from ``fallback``.
    """
    n = sums.shape[2]
    plus = sums[:, 0] / sums[:, 1].clamp(min=1e-300)  # (B, n, n+1) indexed by |A|
    minus = sums[:, 2] / sums[:, 3].clamp(min=1e-300)
    means = torch.stack([plus, minus], dim=1)  # (B, 2, n, n+1)
    if fallback is not None:
        empty = torch.stack([sums[:, 1], sums[:, 3]], dim=1) == 0
        means = torch.where(empty, fallback.expand_as(means), means)
    values = (means[:, 0, :, 1:] - means[:, 1, :, :-1]).sum(dim=2) / n  # (B, n)
    return values, means


@dataclass(frozen=True)
class StratifiedShapley(SampledValuation):
    """Stratified SVARM: strata by (client, coalition size), every evaluation reused by all clients.

    ``φ_i = (1/n) Σ_s (φ⁺_{i,s} − φ⁻_{i,s})`` with ``φ⁺_{i,s}`` the mean of ``v(A)`` over ``A ∋ i``,
    ``|A| = s + 1`` and ``φ⁻_{i,s}`` over ``A ∌ i``, ``|A| = s``. Sizes 0, 1, n−1, n are evaluated
    exactly (``2n + 2`` evaluations); a warm-up covers each middle stratum once; the rest of the
    budget draws a size uniformly on ``2..n−2`` (the paper also analyses non-uniform size
    distributions; uniform is our documented choice) and a uniform coalition of that size. Each
    sampled ``v(A)`` updates one stratum of every client. Bootstrap unit: a sampled coalition (the
    exact strata stay fixed).

    ``budget`` = distinct utility evaluations (a coalition drawn twice counts twice in its strata
    but costs once); ``control_variate`` estimates the residual of the FedAvg first-order surrogate
    (:mod:`fedguard.valuation.control_variate`), whose within-size spread is what SVARM's variance
    is made of.
    """

    def fit(self, game: Game | RoundGame, generator: torch.Generator) -> Scores:
        g = as_game(game)
        n = g.n_players
        budget = resolve_budget(self.budget, n)
        exact_masks = exact_size_coalitions(n)
        warm = warmup_coalitions(n, generator)
        minimum = int(exact_masks.shape[0] + warm.shape[0])  # the warm-up's size, not its draw
        check_budget(budget, n, minimum=minimum, method="stratified")
        tracker = QueryTracker(g)
        surrogate = begin_control_variate(tracker) if self.control_variate and n > 1 else None
        exact_values = tracker.utilities(exact_masks)
        tracker.utilities(warm)

        def draw() -> tuple[Tensor, Tensor]:
            mask = random_middle_coalitions(1, n, generator)
            return mask, mask

        extra = draw_within_budget(tracker, budget, draw, max_units=budget) if n > 3 else []
        sampled = torch.cat([warm, *extra])
        sampled_values = tracker.utilities(sampled)

        def sums_for(masks: Tensor, values: Tensor, weights: Tensor) -> Tensor:
            bits = ((masks.reshape(-1, 1) >> torch.arange(n)) & 1).bool()
            return strata_sums(bits, bits.sum(1), values, weights)

        fixed = sums_for(exact_masks, exact_values, torch.ones(1, exact_masks.shape[0]))
        total = fixed + sums_for(sampled, sampled_values, torch.ones(1, sampled.shape[0]))
        estimate, means = shapley_from_strata(total)
        m = int(sampled.shape[0])
        if m >= 2:
            idx = bootstrap_indices(m, self.n_bootstrap, generator)  # (B, m)
            weights = torch.zeros(self.n_bootstrap, m, dtype=torch.float64)
            weights.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
            replicates, _ = shapley_from_strata(
                fixed + sums_for(sampled, sampled_values, weights), fallback=means
            )
        else:
            replicates = estimate.expand(2, n)
        scores = sampled_scores(
            "stratified",
            estimate[0],
            replicates,
            n_units=max(m, 2) if m >= 2 or n <= 3 else m,
            n_evaluations=tracker.n_distinct,
            n_queries=tracker.n_queries,
            target="shapley",
            confidence=self.confidence,
            info={"n_sampled": m},
        )
        if surrogate is None:
            return scores
        return shift_scores(scores, surrogate.semivalue(shapley_size_distribution(n)))
