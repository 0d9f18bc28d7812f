"""Audit checks on valuation results: Shapley axioms, flags and agreement between estimators.

Flags are one-sided tests on each client's value with a Holm correction over the clients, so
that in a run without attackers no honest client is flagged by chance (with probability at
least ``1 − (1 − confidence)/2`` per flag type): see :func:`flag_clients`.

References
----------
.. [1] L. S. Shapley. "A Value for n-Person Games." 1953 (efficiency, symmetry, null player).
.. [2] Y. Fraboni, R. Vidal, M. Lorenzi. "Free-rider Attacks on Model Aggregation in Federated
   Learning." AISTATS 2021 (free-riders the valuation should expose).
.. [3] S. Holm. "A Simple Sequentially Rejective Multiple Test Procedure." Scandinavian Journal
   of Statistics 6(2), 1979.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import optimize, stats
from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.valuation.base import Scores
from fedguard.valuation.game import Game, RoundGame, as_game
from fedguard.valuation.reconstruction import RoundUpdates

FREE_RIDER = "free-rider?"
POISONER = "harmful?"
#: How the flags correct for testing every client (stated in the output and the README).
MULTIPLICITY = "Holm"


@dataclass(frozen=True)
class Agreement:
    """Rank agreement between two estimators' values."""

    method_a: str
    method_b: str
    spearman: float
    kendall: float


@dataclass(frozen=True)
class AuditReport:
    """What ``fedguard contrib`` prints under the table."""

    total_gain: float  # v(N) − v(∅)
    efficiency_gap: float  # Σφ − (v(N) − v(∅)); meaningful for efficient targets (Shapley)
    flags: tuple[str, ...]  # per client: "", FREE_RIDER or POISONER
    flag_rule: str = ""  # the tests behind the flags, in one sentence
    symmetry: tuple[tuple[int, int, float, bool], ...] = ()  # (i, j, |φ_i − φ_j|, within interval)
    null_players: tuple[tuple[int, float, bool], ...] = ()  # (i, φ_i, |φ_i| ≤ tolerance)
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {
            "total_gain": self.total_gain,
            "efficiency_gap": self.efficiency_gap,
            "flags": list(self.flags),
            "flag_rule": self.flag_rule,
            "symmetry": [list(s) for s in self.symmetry],
            "null_players": [list(s) for s in self.null_players],
            "agreements": [a.__dict__ for a in self.agreements],
        }


def efficiency_gap(scores: Scores, game: Game | RoundGame) -> tuple[float, float]:
    """``(Σφ − (v(N) − v(∅)), v(N) − v(∅))`` on the valued game (two cached evaluations)."""
    g = as_game(game)
    empty, grand = g.utilities(torch.tensor([0, g.grand_mask])).tolist()
    gain = grand - empty
    return float(scores.values.sum()) - gain, gain


def interval_dof(scores: Scores) -> Tensor:
    """``(n,)`` degrees of freedom of the Student-t each client's interval was built with.

    Every estimator reports ``value ± q·SE`` with ``q = t_{df, (1+confidence)/2}``
    (:mod:`fedguard.valuation.base`); ``df`` is recovered from ``q`` (solved once per distinct
    ``q``). ``inf`` where ``q`` is the normal quantile or the standard error is 0 or infinite.
    """
    level = 0.5 + scores.confidence / 2.0
    z = float(stats.norm.ppf(level))
    solved: dict[float, float] = {}
    out = []
    for value, upper, se in zip(
        scores.values.tolist(), scores.upper.tolist(), scores.std_errors.tolist(), strict=True
    ):
        q = (upper - value) / se if 0.0 < se < math.inf else math.nan
        if not math.isfinite(q) or q <= z * (1 + 1e-9):
            out.append(math.inf)
            continue
        key = round(q, 9)
        if key not in solved:
            solved[key] = _t_dof(level, q)
        out.append(solved[key])
    return torch.tensor(out, dtype=torch.float64)


def _t_dof(level: float, quantile: float) -> float:
    """The ``df`` with ``t_df.ppf(level) = quantile`` (the quantile falls as ``df`` grows)."""

    def gap(df: float) -> float:
        return float(stats.t.ppf(level, df)) - quantile

    return float(optimize.brentq(gap, 1e-3, 1e9, xtol=1e-10))


def one_sided_p_values(scores: Scores, bound: float, dof: Tensor | None = None) -> Tensor:
    """``(n,)`` p-values of ``H0: φ_i ≥ bound`` against ``φ_i < bound`` from the estimate, its
    standard error and the t distribution of its interval (``dof``: :func:`interval_dof`,
    computed when not given). Without sampling error (SE = 0) the p-value is 0 when the value
    is below ``bound`` and 1 otherwise; with an unknown one (SE = inf) it is 1. Uncorrected,
    ``p < (1 − confidence)/2`` exactly when ``upper < bound``."""
    df = (interval_dof(scores) if dof is None else dof).numpy()
    se = scores.std_errors.to(torch.float64).numpy()
    values = scores.values.to(torch.float64).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (values - bound) / se
        p = np.where(np.isinf(df), stats.norm.cdf(t), stats.t.cdf(t, np.where(np.isinf(df), 1, df)))
    p = np.where(se == 0.0, np.where(values < bound, 0.0, 1.0), p)
    p = np.where(np.isinf(se), 1.0, p)
    return torch.from_numpy(p.astype(np.float64))


def holm_reject(p_values: Tensor, alpha: float) -> Tensor:
    """Holm's step-down procedure: ``(n,)`` bool, the hypotheses rejected with family-wise error
    at most ``alpha``. Sorted ascending, ``p_(k)`` is rejected while ``p_(j) ≤ alpha/(n − j + 1)``
    for every ``j ≤ k`` (Holm 1979)."""
    n = p_values.numel()
    order = torch.argsort(p_values, stable=True)
    limits = alpha / (n - torch.arange(n, dtype=torch.float64))  # α/n, α/(n−1), …, α
    passed = (p_values[order] <= limits).to(torch.int64)
    accepted_run = torch.cumprod(passed, dim=0).bool()  # stops at the first failure
    rejected = torch.zeros(n, dtype=torch.bool)
    rejected[order] = accepted_run
    return rejected


def flag_rule(scores: Scores, threshold: float) -> str:
    """The flags' tests in one sentence (printed under the table, kept in the JSON)."""
    alpha = (1.0 - scores.confidence) / 2.0
    return (
        f"flags: one-sided tests per client with {MULTIPLICITY}'s correction over the "
        f"{scores.n_players} clients (family-wise error ≤ {alpha:.3g} per flag): '{POISONER}' "
        f"when the value is below 0, '{FREE_RIDER}' when below {threshold:g} × the fair share "
        "or when every update the client sent was zero."
    )


def flag_clients(
    scores: Scores, threshold: float, total_gain: float, zero_update: Sequence[int] = ()
) -> tuple[str, ...]:
    """Flag clients whose value is significantly below zero (``harmful?``) or below
    ``threshold × fair share`` with fair share ``|v(N) − v(∅)| / n`` (``free-rider?``).

    Each flag is a one-sided test per client at the interval's level ``(1 − confidence)/2``
    (uncorrected, this is "the whole interval lies below the bound"), corrected with Holm's
    step-down over the ``n`` clients, so that the chance of flagging any client whose value is
    at or above the bound stays at that level. ``zero_update``: clients that sent only zero
    updates — flagged ``free-rider?`` whatever their value (a zero update under sample weighting
    shrinks the aggregate, so its value is negative although it did no harm of its own).
    """
    n = scores.n_players
    fair = abs(total_gain) / n if scores.target != "proxy" else float(scores.values.abs().mean())
    alpha = (1.0 - scores.confidence) / 2.0
    dof = interval_dof(scores)
    harmful = holm_reject(one_sided_p_values(scores, 0.0, dof), alpha).tolist()
    low = holm_reject(one_sided_p_values(scores, threshold * fair, dof), alpha).tolist()
    silent = set(zero_update)
    flags = []
    for i in range(n):
        if i in silent:
            flags.append(FREE_RIDER)
        elif harmful[i]:
            flags.append(POISONER)
        elif low[i]:
            flags.append(FREE_RIDER)
        else:
            flags.append("")
    return tuple(flags)


def zero_update_clients(
    rounds: Sequence[RoundUpdates], tolerance: float = 1e-12
) -> tuple[int, ...]:
    """Clients whose every saved update is zero (norm ≤ ``tolerance`` × the round's largest)."""
    sent: dict[int, bool] = {}
    for r in rounds:
        if r.deltas.numel() == 0:
            continue
        norms = r.deltas.to(torch.float64).norm(dim=1)  # (m,)
        scale = float(norms.max()) * tolerance
        for cid, norm in zip(r.client_ids.tolist(), norms.tolist(), strict=True):
            sent[cid] = sent.get(cid, False) or norm > scale
    return tuple(sorted(c for c, nonzero in sent.items() if not nonzero))


def symmetry_check(
    scores: Scores, duplicates: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int, float, bool], ...]:
    """For client pairs flagged as duplicates: the value gap and whether it is within one
    interval width (the larger of the two clients' widths; exact methods need a tiny gap)."""
    out = []
    for i, j in duplicates:
        if not (0 <= i < scores.n_players and 0 <= j < scores.n_players):
            raise ConfigError(f"duplicate pair ({i}, {j}) names a client outside the run.")
        gap = abs(float(scores.values[i] - scores.values[j]))
        width = max(
            float(scores.upper[i] - scores.lower[i]), float(scores.upper[j] - scores.lower[j])
        )
        out.append((i, j, gap, gap <= max(width, 1e-9)))
    return tuple(out)


def empirical_null_players(game: Game | RoundGame, tolerance: float = 1e-12) -> tuple[int, ...]:
    """Players whose every marginal contribution seen in the game's cache is within ``tolerance``
    of 0 (a null player of the exact game when the cache holds all ``2**n`` coalitions)."""
    g = as_game(game)
    cache = g.cached()
    nulls = []
    for i in range(g.n_players):
        bit = 1 << i
        pairs = [(m, m | bit) for m in cache if not m & bit and (m | bit) in cache]
        if pairs and all(abs(cache[b] - cache[a]) <= tolerance for a, b in pairs):
            nulls.append(i)
    return tuple(nulls)


def null_player_check(
    scores: Scores, game: Game | RoundGame, tolerance: float = 1e-9
) -> tuple[tuple[int, float, bool], ...]:
    """For each empirical null player: its value and whether ``|φ_i| ≤ tolerance`` or its interval
    contains 0."""
    out = []
    for i in empirical_null_players(game):
        value = float(scores.values[i])
        ok = abs(value) <= tolerance or float(scores.lower[i]) <= 0.0 <= float(scores.upper[i])
        out.append((i, value, ok))
    return tuple(out)


def rank_agreement(a: Scores, b: Scores) -> Agreement:
    """Spearman ρ and Kendall τ between two estimators' values (scipy)."""
    if a.n_players != b.n_players:
        raise ConfigError("rank agreement needs two valuations of the same clients.")
    rho = stats.spearmanr(a.values.numpy(), b.values.numpy()).statistic
    tau = stats.kendalltau(a.values.numpy(), b.values.numpy()).statistic
    return Agreement(a.method, b.method, float(rho), float(tau))


def audit(
    scores: Scores,
    game: Game | RoundGame,
    threshold: float = 0.1,
    duplicates: Sequence[tuple[int, int]] = (),
    others: Sequence[Scores] = (),
    total_gain: float | None = None,
    zero_update: Sequence[int] = (),
) -> AuditReport:
    """All checks for one valuation (``others``: further estimators for rank agreement;
    ``total_gain``: the efficiency target when it is not ``game``'s, e.g. a mean over runs;
    ``zero_update``: clients that sent only zero updates, see :func:`flag_clients`)."""
    gap, gain = efficiency_gap(scores, game)
    if total_gain is not None:
        gap, gain = float(scores.values.sum()) - total_gain, total_gain
    return AuditReport(
        total_gain=gain,
        efficiency_gap=gap,
        flags=flag_clients(scores, threshold, gain, zero_update),
        flag_rule=flag_rule(scores, threshold),
        symmetry=symmetry_check(scores, duplicates),
        null_players=null_player_check(scores, game),
        agreements=tuple(rank_agreement(scores, o) for o in others),
    )
