"""Cooperative games over clients: coalitions as bitmasks, cached and counted utilities.

A coalition of players ``0..n-1`` is an ``int`` bitmask (bit ``i`` set ⇔ client ``i`` is in it) or a
``frozenset`` of player indices. :class:`Game` caches every utility it computes, so all estimators
run on one game reuse each other's evaluations, and counts the fresh evaluations (the cost).

:class:`RoundGame` is a multi-round game (federated valuation): the utility of coalition ``S`` in
round ``r`` is the score of the model that round ``r``'s global model plus ``S``'s updates builds
(multi-round reconstruction, Song et al. 2019). Its :meth:`RoundGame.total` is the game ``v(S) = Σ_r
v_r(S)`` whose Shapley value equals the sum of the per-round Shapley values (additivity).

References
----------
.. [1] T. Song, Y. Tong, S. Wei. "Profit Allocation for Federated Learning." IEEE Big Data 2019.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeAlias

import torch
from torch import Tensor

from fedguard.errors import ConfigError

Coalition: TypeAlias = int | frozenset[int] | Sequence[int]

#: Largest number of players a bitmask game supports (masks are int64).
MAX_PLAYERS = 62


def to_mask(coalition: Coalition | Iterable[int], n_players: int) -> int:
    """Bitmask of a coalition given as an ``int`` mask or an iterable of player indices."""
    if isinstance(coalition, int):
        mask = coalition
    else:
        mask = 0
        for player in coalition:
            if not 0 <= int(player) < n_players:
                raise ConfigError(f"coalition members must be in 0..{n_players - 1}; got {player}.")
            mask |= 1 << int(player)
    if not 0 <= mask < (1 << n_players):
        raise ConfigError(f"coalition mask must be in [0, 2**{n_players}); got {mask}.")
    return mask


def members(mask: int) -> frozenset[int]:
    """Players in a bitmask coalition."""
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)


def mask_bits(masks: Tensor, n_players: int) -> Tensor:
    """``(k,)`` int64 masks → ``(k, n_players)`` bool membership matrix."""
    shifts = torch.arange(n_players, dtype=torch.int64)  # (n,)
    return ((masks.reshape(-1, 1) >> shifts) & 1).bool()  # (k, n)


def popcount(masks: Tensor, n_players: int) -> Tensor:
    """``(k,)`` int64 masks → ``(k,)`` int64 coalition sizes."""
    return mask_bits(masks, n_players).sum(dim=1)


def bits_to_masks(bits: Tensor) -> Tensor:
    """``(k, n)`` bool membership → ``(k,)`` int64 masks."""
    n = bits.shape[-1]
    powers = torch.ones(n, dtype=torch.int64) << torch.arange(n, dtype=torch.int64)  # (n,)
    return (bits.to(torch.int64) * powers).sum(dim=-1)


def all_masks(n_players: int) -> Tensor:
    """All ``2**n`` coalitions in mask order, ``(2**n,)`` int64."""
    return torch.arange(1 << n_players, dtype=torch.int64)


def _check_n_players(n_players: int) -> None:
    if not 1 <= n_players <= MAX_PLAYERS:
        raise ConfigError(f"number of players must be in 1..{MAX_PLAYERS}; got {n_players}.")


class Game(ABC):
    """A transferable-utility game on players ``0..n_players-1`` with a memoized utility.

    Subclasses implement :meth:`_evaluate` on a batch of masks; :meth:`utilities` calls it only for
    coalitions not yet in the cache and counts them in :attr:`n_evaluations`.
    """

    def __init__(self, n_players: int) -> None:
        _check_n_players(n_players)
        self.n_players = n_players
        self._cache: dict[int, float] = {}
        self.n_evaluations = 0  # fresh utility evaluations (cache misses) over the game's life

    @abstractmethod
    def _evaluate(self, masks: Tensor) -> Tensor:
        """``(k,)`` int64 distinct masks → ``(k,)`` float64 utilities."""

    @property
    def grand_mask(self) -> int:
        return (1 << self.n_players) - 1

    def utilities(self, masks: Tensor | Sequence[int]) -> Tensor:
        """Utilities of a batch of coalitions, ``(k,)`` int64 masks → ``(k,)`` float64."""
        keys = [int(m) for m in (masks.tolist() if isinstance(masks, Tensor) else masks)]
        limit = 1 << self.n_players
        missing = sorted({k for k in keys if k not in self._cache})
        if missing:
            if missing[0] < 0 or missing[-1] >= limit:
                raise ConfigError(f"coalition masks must be in [0, 2**{self.n_players}).")
            values = self._evaluate(torch.tensor(missing, dtype=torch.int64))
            values = values.to(torch.float64).reshape(-1)
            if values.shape[0] != len(missing):
                raise ValueError("a game's _evaluate must return one utility per mask.")
            self._cache.update(zip(missing, values.tolist(), strict=True))
            self.n_evaluations += len(missing)
        return torch.tensor([self._cache[k] for k in keys], dtype=torch.float64)

    def utility(self, coalition: Coalition) -> float:
        """Utility of one coalition (``int`` mask, ``frozenset`` or sequence of players)."""
        return float(self.utilities([to_mask(coalition, self.n_players)])[0])

    def __call__(self, coalition: Coalition) -> float:
        return self.utility(coalition)

    def cached(self) -> dict[int, float]:
        """A copy of the cache: mask → utility of every coalition evaluated so far."""
        return dict(self._cache)


class TabularGame(Game):
    """A game given by the table of all ``2**n`` utilities in mask order."""

    def __init__(self, values: Tensor) -> None:
        size = int(values.shape[0])
        n_players = size.bit_length() - 1
        if size != 1 << n_players or n_players < 1:
            raise ConfigError(f"a tabular game needs 2**n utilities; got {size}.")
        super().__init__(n_players)
        self.values = values.to(torch.float64)  # (2**n,)

    def _evaluate(self, masks: Tensor) -> Tensor:
        return self.values[masks]


class FunctionGame(Game):
    """A game from a Python function of the coalition's member set (tests, small examples)."""

    def __init__(self, n_players: int, function: object) -> None:
        super().__init__(n_players)
        if not callable(function):
            raise ConfigError("function must be callable on a frozenset of players.")
        self.function = function

    def _evaluate(self, masks: Tensor) -> Tensor:
        fn = self.function
        assert callable(fn)
        return torch.tensor([float(fn(members(int(m)))) for m in masks], dtype=torch.float64)


class QueryTracker:
    """Counts one estimator's utility queries and the distinct coalitions they touch.

    ``n_queries`` counts every requested utility; ``n_distinct`` the distinct coalitions (the cost
    with a cold cache, and the unit of the sampling estimators' ``budget``: a repeated coalition is
    free). With :meth:`subtract` set, :meth:`utilities` returns the residual ``v(S) − (u(S) − v(∅))``
    of a control-variate surrogate ``u`` (:mod:`fedguard.valuation.control_variate`).
    """

    def __init__(self, game: Game) -> None:
        self.game = game
        self.n_queries = 0
        self._seen: set[int] = set()
        self.surrogate: Surrogate | None = None

    @property
    def n_players(self) -> int:
        return self.game.n_players

    @property
    def n_distinct(self) -> int:
        return len(self._seen)

    def subtract(self, surrogate: Surrogate) -> None:
        """From now on :meth:`utilities` returns residuals of ``surrogate``."""
        self.surrogate = surrogate

    def raw_utilities(self, masks: Tensor) -> Tensor:
        """``(k,)`` masks → ``(k,)`` utilities of the game itself (counted like any query)."""
        masks = masks.reshape(-1)
        self.n_queries += int(masks.shape[0])
        self._seen.update(int(m) for m in masks.tolist())
        return self.game.utilities(masks)

    def utilities(self, masks: Tensor) -> Tensor:
        values = self.raw_utilities(masks)
        if self.surrogate is not None:
            values = values - self.surrogate.excess(masks.reshape(-1))
        return values

    def utility(self, mask: int) -> float:
        return float(self.utilities(torch.tensor([mask], dtype=torch.int64))[0])

    def new_cost(self, masks: Tensor, pending: set[int]) -> set[int]:
        """The masks of ``masks`` neither queried yet nor in ``pending`` (what they would cost)."""
        return {m for m in masks.reshape(-1).tolist() if m not in self._seen and m not in pending}


class Surrogate(Protocol):
    """A control-variate game: ``excess(masks)`` = ``u(S) − v(∅)`` for a batch of masks."""

    def excess(self, masks: Tensor) -> Tensor: ...


def draw_within_budget(
    tracker: QueryTracker,
    budget: int,
    draw: Callable[[], tuple[Tensor, Tensor]],
    max_units: int,
) -> list[Tensor]:
    """Draw sampling units until the next one would take the distinct evaluations over ``budget``
    or ``max_units`` are drawn. ``draw()`` returns a unit and the masks it will query.

    The stopping rule depends only on which coalitions were drawn, and is invariant under
    relabelling the players, so each accepted unit keeps its sampling distribution (an estimator
    unbiased per unit stays unbiased). Nothing is evaluated here.
    """
    pending: set[int] = set()
    units: list[Tensor] = []
    while len(units) < max_units:
        unit, masks = draw()
        fresh = tracker.new_cost(masks, pending)
        if tracker.n_distinct + len(pending) + len(fresh) > budget:
            break
        pending |= fresh
        units.append(unit)
    return units


# --------------------------------------------------------------------------------------------
# Multi-round games


class RoundGame(ABC):
    """Per-round utilities ``v_r(S)`` of a federated run (players = clients).

    Only round ``r``'s participants have updates in round ``r``: ``v_r(S) = v_r(S ∩ P_r)``.
    Utilities are cached per ``(round, mask)`` and the fresh evaluations counted in
    :attr:`n_evaluations` (each is one model evaluation).
    """

    def __init__(self, n_players: int, n_rounds: int) -> None:
        _check_n_players(n_players)
        if n_rounds < 1:
            raise ConfigError(f"a round game needs at least one round; got {n_rounds}.")
        self.n_players = n_players
        self.n_rounds = n_rounds
        self._cache: dict[tuple[int, int], float] = {}
        self.n_evaluations = 0
        self._total: MultiRoundGame | None = None

    @abstractmethod
    def participants(self, round_index: int) -> tuple[int, ...]:
        """Clients that sent an update in round ``round_index`` (sorted)."""

    @abstractmethod
    def _evaluate_round(self, round_index: int, masks: Tensor) -> Tensor:
        """``(k,)`` distinct masks (subsets of the participants) → ``(k,)`` float64 utilities."""

    def participant_mask(self, round_index: int) -> int:
        return to_mask(self.participants(round_index), self.n_players)

    def round_utilities(self, round_index: int, masks: Tensor | Sequence[int]) -> Tensor:
        """``v_r`` of a batch of coalitions, ``(k,)`` int64 → ``(k,)`` float64."""
        if not 0 <= round_index < self.n_rounds:
            raise ConfigError(f"round must be in 0..{self.n_rounds - 1}; got {round_index}.")
        allowed = self.participant_mask(round_index)
        raw = masks.tolist() if isinstance(masks, Tensor) else list(masks)
        keys = [int(m) & allowed for m in raw]
        missing = sorted({k for k in keys if (round_index, k) not in self._cache})
        if missing:
            values = self._evaluate_round(round_index, torch.tensor(missing, dtype=torch.int64))
            values = values.to(torch.float64).reshape(-1)
            self._cache.update(
                ((round_index, k), v) for k, v in zip(missing, values.tolist(), strict=True)
            )
            self.n_evaluations += len(missing)
        return torch.tensor([self._cache[(round_index, k)] for k in keys], dtype=torch.float64)

    def round_utility(self, round_index: int, coalition: Coalition) -> float:
        mask = to_mask(coalition, self.n_players)
        return float(self.round_utilities(round_index, [mask])[0])

    def total(self) -> MultiRoundGame:
        """The summed game ``v(S) = Σ_r v_r(S)`` (one instance, so its cache is shared)."""
        if self._total is None:
            self._total = MultiRoundGame(self)
        return self._total

    def round_view(self, round_index: int) -> RoundView:
        """Round ``round_index`` as a :class:`Game` over its participants (relabelled 0..m-1)."""
        return RoundView(self, round_index)


class MultiRoundGame(Game):
    """``v(S) = Σ_r v_r(S ∩ P_r)``: the MR game on which single-game estimators run."""

    def __init__(self, round_game: RoundGame) -> None:
        super().__init__(round_game.n_players)
        self.round_game = round_game

    def _evaluate(self, masks: Tensor) -> Tensor:
        total = torch.zeros(masks.shape[0], dtype=torch.float64)
        for r in range(self.round_game.n_rounds):
            total += self.round_game.round_utilities(r, masks)
        return total


class RoundView(Game):
    """One round of a :class:`RoundGame` as a game over that round's participants."""

    def __init__(self, round_game: RoundGame, round_index: int) -> None:
        self.players = round_game.participants(round_index)  # local index → client id
        if not self.players:
            raise ConfigError(f"round {round_index} has no participants.")
        super().__init__(len(self.players))
        self.round_game = round_game
        self.round_index = round_index
        self._global_bits = torch.tensor([1 << p for p in self.players], dtype=torch.int64)  # (m,)

    def to_global(self, masks: Tensor) -> Tensor:
        """Local masks over the participants → client masks, ``(k,)`` → ``(k,)``."""
        bits = mask_bits(masks, self.n_players).to(torch.int64)  # (k, m)
        return (bits * self._global_bits).sum(dim=1)

    def _evaluate(self, masks: Tensor) -> Tensor:
        return self.round_game.round_utilities(self.round_index, self.to_global(masks))


class SingleRoundGame(RoundGame):
    """A plain :class:`Game` seen as a one-round game in which every player participates."""

    def __init__(self, game: Game) -> None:
        super().__init__(game.n_players, 1)
        self.game = game

    def participants(self, round_index: int) -> tuple[int, ...]:
        return tuple(range(self.n_players))

    def _evaluate_round(self, round_index: int, masks: Tensor) -> Tensor:
        return self.game.utilities(masks)

    def total(self) -> MultiRoundGame:
        return super().total()


def as_game(game: Game | RoundGame) -> Game:
    """The single game an estimator values: a :class:`Game` itself, or a round game's sum."""
    if isinstance(game, RoundGame):
        if isinstance(game, SingleRoundGame):
            return game.game
        return game.total()
    if isinstance(game, Game):
        return game
    raise ConfigError(f"game must be a Game or a RoundGame; got {type(game).__name__}.")


def as_round_game(game: Game | RoundGame) -> RoundGame:
    """A round game: itself, or a plain game as one round with every player taking part."""
    if isinstance(game, RoundGame):
        return game
    if isinstance(game, Game):
        return SingleRoundGame(game)
    raise ConfigError(f"game must be a Game or a RoundGame; got {type(game).__name__}.")
