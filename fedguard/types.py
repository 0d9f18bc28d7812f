"""Core data types of a federated round (frozen dataclasses; names carry meaning and units)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedguard.errors import ConfigError
from fedguard.privacy.events import ClientEvent, PrivacyEvent


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
    #: SHA-256 of the model each sampled client received (aligned with ``sampled_ids``), for
    #: transports that bind the broadcast model into secure aggregation; ``None`` before broadcast
    model_digests: tuple[bytes, ...] | None = None

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
    #: privacy events of a rule that adds noise itself (DP-BREM)
    events: tuple[PrivacyEvent | ClientEvent, ...] = ()


@dataclass(frozen=True)
class LocalTrainingRecipe:
    """How a client trains locally in one round — the server's choice, known to its attacks.

    The core fills it from the run's ``training`` section (one place:
    :func:`fedguard.core.simulation.local_training_recipe`) and hands it to privacy attacks in
    :attr:`ServerView.recipe`, so that an attack re-training a client (reference models of
    membership inference) trains exactly like it. The semantics are those of
    :mod:`fedguard.core.local_training`:

    * ``fedavg``: every local epoch the client reshuffles its ``n`` samples and takes
      ``⌈n / batch_size⌉`` steps on consecutive batches (the last one partial), so
      ``local_epochs·⌈n / batch_size⌉`` steps per round;
    * ``fedsgd``: one full-batch step (``local_epochs`` and ``batch_size`` unused);
    * each step: mean cross-entropy of the batch plus the FedProx term ``prox_mu/2·‖w − w₀‖²``
      (``w₀`` the broadcast model), then SGD with PyTorch's momentum convention
      ``b ← momentum·b + g; w ← w − learning_rate·b`` (buffer reset every round).

    References
    ----------
    McMahan et al., "Communication-efficient learning of deep networks from decentralized data",
    AISTATS 2017 (FedAvg, FedSGD).
    Li et al., "Federated optimization in heterogeneous networks", MLSys 2020 (FedProx).
    """

    algorithm: str  # "fedavg" | "fedsgd"
    learning_rate: float
    local_epochs: int = 1
    batch_size: int = 16
    momentum: float = 0.0
    prox_mu: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            (self.algorithm in ("fedavg", "fedsgd"), "algorithm", "'fedavg' or 'fedsgd'"),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                "learning_rate",
                "a finite number > 0",
            ),
            (self.local_epochs >= 1, "local_epochs", "an integer ≥ 1"),
            (self.batch_size >= 1, "batch_size", "an integer ≥ 1"),
            (0.0 <= self.momentum < 1.0, "momentum", "in [0, 1)"),
            (math.isfinite(self.prox_mu) and self.prox_mu >= 0, "prox_mu", "a finite number ≥ 0"),
        )
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"training.{name} must be {allowed}.")

    def local_steps(self, n_samples: int) -> int:
        """SGD steps a client holding ``n_samples`` samples takes in one round."""
        if self.algorithm == "fedsgd":
            return 1
        return self.local_epochs * math.ceil(n_samples / self.batch_size)

    def step_batch_size(self, n_samples: int) -> int:
        """Samples in a full batch of a client holding ``n_samples`` (all of them for FedSGD)."""
        if self.algorithm == "fedsgd":
            return n_samples
        return min(self.batch_size, n_samples)


@dataclass(frozen=True)
class BroadcastPlan:
    """What the server sends in the broadcast stage.

    ``model`` goes to every sampled client except those in ``per_client``, which receive their
    own model (a malicious server's model-inconsistency attack). ``info`` holds scalars the
    component wants in the round record.
    """

    model: Tensor  # (d,)
    per_client: Mapping[int, Tensor] = field(default_factory=dict)  # client id -> (d,)
    info: Mapping[str, Any] = field(default_factory=dict)

    def received(self, client_ids: tuple[int, ...]) -> Tensor:
        """``(n, d)`` models the clients received, in the order of ``client_ids``."""
        return torch.stack([self.per_client.get(i, self.model) for i in client_ids])


@dataclass(frozen=True)
class ServerView:
    """What an honest-but-curious server sees of one round (the transport's output).

    Under plain transport ``updates`` holds every client's delta; under secure aggregation it is
    ``None`` and only ``update_sum`` (and the participants' ids) is visible.
    ``training`` describes the local-training hyper-parameters the server chose (lr, steps,
    batch size, algorithm) as a plain mapping; ``recipe`` is the same as one typed
    :class:`LocalTrainingRecipe` (filled by the core; ``None`` in views built without one).
    """

    round: int
    global_params: Tensor  # (d,)
    client_ids: tuple[int, ...]
    updates: Tensor | None  # (n, d) or None under secure aggregation
    update_sum: Tensor  # (d,)
    num_samples: tuple[int, ...]
    training: Mapping[str, Any] = field(default_factory=dict)
    recipe: LocalTrainingRecipe | None = None
    #: what this server broadcast this round (``None``: every client got ``global_params``)
    broadcast: BroadcastPlan | None = None
    #: ``(n, d)`` bool: the coordinates each client sent (a payload policy such as FedRand keeps
    #: the others private); ``None``: every client sent its whole update
    sent_mask: Tensor | None = None


@dataclass(frozen=True)
class Truth:
    """Ground truth, handed only to metrics — never to an attack or a defense."""

    malicious_ids: tuple[int, ...]
    free_rider_ids: tuple[int, ...] = ()
    private_batches: Mapping[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    #: text: the planted secrets (:class:`fedguard.text.secrets.Secret`, ``client`` = the
    #: holding client's index, -1 if none)
    secrets: tuple[Any, ...] = ()
