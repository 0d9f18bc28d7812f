"""Coalition utilities rebuilt from saved client updates (no retraining).

Each round ``r`` saved the broadcast global parameters ``θ_r (d,)``, the participants' ids, their
updates ``Δ_i (m, d)`` and data sizes. The FedAvg aggregate of a coalition ``S`` in round ``r`` is
``a_r(S) = Σ_{i∈S∩P_r} n_i Δ_i / Σ_{i∈S∩P_r} n_i`` (zero when ``S ∩ P_r`` is empty).

- **MR** (multi-round reconstruction, Song et al. 2019): ``v_r(S) = U(θ_r + η a_r(S))`` per round,
on
  the real global model of that round; :class:`MultiRoundReconstruction` is a :class:`RoundGame`
  (its :meth:`~RoundGame.total` is the summed game, whose Shapley value is the sum of per-round
  ones).
- **OR** (one-round reconstruction, Song et al. 2019): one shadow model per coalition,
  ``θ_S = θ_0 + η Σ_r a_r(S)``, built from every round's ``S``-updates; ``v(S) = U(θ_S)``.

``U`` is any batched evaluator ``(k, d) params → (k,)`` utilities (validation accuracy or negative
loss); coalitions are evaluated as stacked parameter vectors, in chunks. ``η`` is the server
learning rate (1 for FedAvg).

References
----------
.. [1] T. Song, Y. Tong, S. Wei. "Profit Allocation for Federated Learning." IEEE Big Data 2019.
.. [2] H. B. McMahan et al. "Communication-Efficient Learning of Deep Networks from Decentralized
   Data." AISTATS 2017 (FedAvg weights).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.valuation.game import Game, RoundGame, mask_bits

Evaluator = Callable[[Tensor], Tensor]  # (k, d) flat parameters → (k,) utilities


@dataclass(frozen=True)
class RoundUpdates:
    """One round's saved updates (the content of ``updates/round_XXXXX.pt``)."""

    global_params: Tensor  # (d,)
    client_ids: Tensor  # (m,) int64
    deltas: Tensor  # (m, d)
    num_samples: Tensor  # (m,)

    def __post_init__(self) -> None:
        m = int(self.client_ids.shape[0])
        if self.deltas.ndim != 2 or self.deltas.shape[0] != m or self.num_samples.shape[0] != m:
            raise ConfigError(
                "saved updates must hold client_ids (m,), deltas (m, d), num_samples (m,)."
            )
        if self.deltas.shape[1] != self.global_params.shape[0]:
            raise ConfigError("saved deltas and global_params must have the same dimension d.")
        if len(set(self.client_ids.tolist())) != m:
            raise ConfigError("saved client_ids of a round must be distinct.")

    def weights(self) -> Tensor:
        """``(m,)`` float64 FedAvg weights ``n_i / Σ n_j``."""
        w = self.num_samples.to(torch.float64)
        return w / w.sum()


def coalition_aggregates(updates: RoundUpdates, masks: Tensor) -> Tensor:
    """FedAvg aggregate of each coalition's updates, ``(k,)`` masks → ``(k, d)`` float64."""
    n_bits = int(updates.client_ids.max().item()) + 1 if updates.client_ids.numel() else 1
    bits = mask_bits(masks, max(n_bits, 1))[:, updates.client_ids]  # (k, m)
    weights = bits.to(torch.float64) * updates.num_samples.to(torch.float64)  # (k, m)
    total = weights.sum(dim=1, keepdim=True)  # (k, 1)
    weights = torch.where(total > 0, weights / total.clamp(min=1e-300), weights)
    return weights @ updates.deltas.to(torch.float64)  # (k, d)


def evaluate_in_chunks(evaluate: Evaluator, params: Tensor, chunk_size: int) -> Tensor:
    """Apply a batched evaluator to ``(k, d)`` parameters ``chunk_size`` rows at a time."""
    out = [
        evaluate(params[i : i + chunk_size]).reshape(-1)
        for i in range(0, params.shape[0], chunk_size)
    ]
    return torch.cat(out).to(torch.float64) if out else torch.zeros(0, dtype=torch.float64)


def _check_rounds(rounds: Sequence[RoundUpdates], n_players: int) -> None:
    if not rounds:
        raise ConfigError("the run has no saved rounds of updates.")
    for r, rnd in enumerate(rounds):
        ids = rnd.client_ids
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_players):
            raise ConfigError(f"round {r} has client ids outside 0..{n_players - 1}.")


class MultiRoundReconstruction(RoundGame):
    """MR per-round utilities ``v_r(S) = U(θ_r + η a_r(S))`` (Song et al. 2019)."""

    def __init__(
        self,
        rounds: Sequence[RoundUpdates],
        n_players: int,
        evaluate: Evaluator,
        server_learning_rate: float = 1.0,
        chunk_size: int = 256,
    ) -> None:
        super().__init__(n_players, len(rounds))
        _check_rounds(rounds, n_players)
        self.rounds = list(rounds)
        self.evaluate = evaluate
        self.server_learning_rate = server_learning_rate
        self.chunk_size = chunk_size

    def participants(self, round_index: int) -> tuple[int, ...]:
        return tuple(sorted(int(i) for i in self.rounds[round_index].client_ids.tolist()))

    def round_updates(self, round_index: int) -> RoundUpdates:
        return self.rounds[round_index]

    def _evaluate_round(self, round_index: int, masks: Tensor) -> Tensor:
        rnd = self.rounds[round_index]
        params = rnd.global_params.to(torch.float64) + self.server_learning_rate * (
            coalition_aggregates(rnd, masks)
        )  # (k, d)
        return evaluate_in_chunks(self.evaluate, params, self.chunk_size)


class OneRoundReconstruction(Game):
    """OR utilities ``v(S) = U(θ_0 + η Σ_r a_r(S))``: one shadow model per coalition."""

    def __init__(
        self,
        rounds: Sequence[RoundUpdates],
        n_players: int,
        evaluate: Evaluator,
        server_learning_rate: float = 1.0,
        initial_params: Tensor | None = None,
        chunk_size: int = 256,
    ) -> None:
        super().__init__(n_players)
        _check_rounds(rounds, n_players)
        self.rounds = list(rounds)
        self.evaluate = evaluate
        self.server_learning_rate = server_learning_rate
        init = rounds[0].global_params if initial_params is None else initial_params
        self.initial_params = init.to(torch.float64)  # (d,)
        self.chunk_size = chunk_size

    def _evaluate(self, masks: Tensor) -> Tensor:
        params = self.initial_params.expand(masks.shape[0], -1).clone()  # (k, d)
        for rnd in self.rounds:
            params += self.server_learning_rate * coalition_aggregates(rnd, masks)
        return evaluate_in_chunks(self.evaluate, params, self.chunk_size)


def has_updates(game: object) -> bool:
    """Whether a game exposes saved updates (needed by the gradient proxies)."""
    return isinstance(game, MultiRoundReconstruction)
