"""Audit checks on valuation results: Shapley axioms, flags and agreement between estimators.

References
----------
.. [1] L. S. Shapley. "A Value for n-Person Games." 1953 (efficiency, symmetry, null player).
.. [2] Y. Fraboni, R. Vidal, M. Lorenzi. "Free-rider Attacks on Model Aggregation in Federated
   Learning." AISTATS 2021 (free-riders the valuation should expose).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from scipy import stats

from fedguard.errors import ConfigError
from fedguard.valuation.base import Scores
from fedguard.valuation.game import Game, RoundGame, as_game

FREE_RIDER = "free-rider?"
POISONER = "harmful?"


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
    symmetry: tuple[tuple[int, int, float, bool], ...] = ()  # (i, j, |φ_i − φ_j|, within interval)
    null_players: tuple[tuple[int, float, bool], ...] = ()  # (i, φ_i, |φ_i| ≤ tolerance)
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {
            "total_gain": self.total_gain,
            "efficiency_gap": self.efficiency_gap,
            "flags": list(self.flags),
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


def flag_clients(scores: Scores, threshold: float, total_gain: float) -> tuple[str, ...]:
    """Flag each client whose whole interval lies below zero (``harmful?``) or below
    ``threshold × fair share`` with fair share ``|v(N) − v(∅)| / n`` (``free-rider?``)."""
    n = scores.n_players
    fair = abs(total_gain) / n if scores.target != "proxy" else float(scores.values.abs().mean())
    flags = []
    for upper in scores.upper.tolist():
        if upper < 0:
            flags.append(POISONER)
        elif upper < threshold * fair:
            flags.append(FREE_RIDER)
        else:
            flags.append("")
    return tuple(flags)


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
) -> AuditReport:
    """All checks for one valuation (``others``: further estimators for rank agreement;
    ``total_gain``: the efficiency target when it is not ``game``'s, e.g. a mean over runs)."""
    gap, gain = efficiency_gap(scores, game)
    if total_gain is not None:
        gap, gain = float(scores.values.sum()) - total_gain, total_gain
    return AuditReport(
        total_gain=gain,
        efficiency_gap=gap,
        flags=flag_clients(scores, threshold, gain),
        symmetry=symmetry_check(scores, duplicates),
        null_players=null_player_check(scores, game),
        agreements=tuple(rank_agreement(scores, o) for o in others),
    )
