"""Core data types of a federated round (frozen dataclasses; names carry meaning and units)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class RoundContext:
    """What every component may know about the current round.

    ``seed`` and ``round`` name the random streams (see :mod:`fedguard.rng`); components draw
    through :meth:`generator` so that their draws are independent of everyone else's.
    Which clients are malicious is *not* here: only attack plugins and :class:`Truth` know it.
    """

    round: int
    seed: int
    global_params: Tensor  # (d,) flat parameters broadcast this round
    sampled_ids: tuple[int, ...]  # clients taking part, in row order of the update tensor
    n_clients: int  # population size
    device: str = "cpu"

    def generator(self, component: str, client: int = -1) -> torch.Generator:
        from fedguard.rng import torch_generator

        return torch_generator(self.seed, self.round, client, component, self.device)


@dataclass(frozen=True)
class ClientUpdate:
    """One client's model delta ``θ_local − θ_global`` (flattened) and its data size."""

    client_id: int
    delta: Tensor  # (d,)
    num_samples: int


@dataclass(frozen=True)
class AggregationContext:
    """What an aggregator is told besides the updates.

    ``n_byzantine`` is the tolerance the user configured (f), never the identities.
    ``state`` is the aggregator's own state returned in the previous round's result (empty at first).
    ``reference_update`` is the server's update on its root dataset (FLTrust), present only for
    aggregators that set ``needs_reference_update``.
    """

    round: int
    n_byzantine: int
    generator: torch.Generator
    global_params: Tensor  # (d,)
    state: Mapping[str, Any] = field(default_factory=dict)
    reference_update: Tensor | None = None  # (d,)
    client_ids: tuple[int, ...] = ()  # row order of the updates (for per-client history)


@dataclass(frozen=True)
class AggregationResult:
    """Outcome of an aggregation rule.

    ``weights``: the effective weight of each input row in the aggregate (rows that were dropped get 0),
    ``scores``: a per-row suspicion score where the rule computes one (higher = more suspicious),
    ``flagged``: row indices the rule rejected or judged malicious, ``state``: cross-round state.
    """

    aggregate: Tensor  # (d,)
    weights: Tensor | None = None  # (n,)
    scores: Tensor | None = None  # (n,)
    flagged: tuple[int, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Any, ...] = ()  # privacy events of a rule that adds noise itself (DP-BREM)


@dataclass(frozen=True)
class ServerView:
    """What an honest-but-curious server sees of one round (the transport's output).

    Under plain transport ``updates`` holds every client's delta; under secure aggregation it is
    ``None`` and only ``update_sum`` (and the participants' ids) is visible.
    ``training`` describes the local-training hyper-parameters the server chose (lr, steps,
    batch size, algorithm), which inversion attacks may use.
    """

    round: int
    global_params: Tensor  # (d,)
    client_ids: tuple[int, ...]
    updates: Tensor | None  # (n, d) or None under secure aggregation
    update_sum: Tensor  # (d,)
    num_samples: tuple[int, ...]
    training: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Truth:
    """Ground truth, handed only to metrics — never to an attack or a defense."""

    malicious_ids: tuple[int, ...]
    free_rider_ids: tuple[int, ...] = ()
    private_batches: Mapping[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
