"""Client contribution valuation: games, exact and estimated Shapley values, proxies, audits."""

from __future__ import annotations

from fedguard.valuation.base import Scores, Valuation
from fedguard.valuation.game import (
    FunctionGame,
    Game,
    MultiRoundGame,
    RoundGame,
    SingleRoundGame,
    TabularGame,
    as_game,
    as_round_game,
)

__all__ = [
    "FunctionGame",
    "Game",
    "MultiRoundGame",
    "RoundGame",
    "Scores",
    "SingleRoundGame",
    "TabularGame",
    "Valuation",
    "as_game",
    "as_round_game",
]
