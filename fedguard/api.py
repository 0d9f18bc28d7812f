"""Base classes of every plugin kind.

A component is a frozen dataclass whose fields are its parameters (that is the schema configs are
validated against); ``__post_init__`` checks each field's own bounds so that a bad config fails
before any training. Bounds that depend on the cohort (Krum's n > 2f + 2) are checked by
:meth:`Component.check_cohort`, which the runner calls for every round size it will use.
Plugins import only this module, :mod:`fedguard.types`, :mod:`fedguard.errors` and the core maths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor

from fedguard.errors import ConfigError, require
from fedguard.privacy.events import ClientEvent, PrivacyEvent, UnitEvent

if TYPE_CHECKING:
    from fedguard.core.built_components import Components
    from fedguard.core.knowledge import AttackerKnowledge
    from fedguard.spec import RunSpec
from fedguard.types import (
    AggregationContext,
    AggregationResult,
    BroadcastPlan,
    RoundContext,
    ServerView,
    Truth,
)


class Component:
    """Mixin for all plugins. Subclasses are ``@dataclass(frozen=True)``."""

    #: Registry name, filled in by :mod:`fedguard.registry` when the class is loaded.
    registry_name: ClassVar[str] = ""

    def check_cohort(self, n_clients: int, n_byzantine: int) -> None:
        """Raise :class:`ConfigError` if the rule cannot work with this many clients per round."""

    def check_compatible(self, spec: RunSpec, components: Components) -> None:
        """Raise :class:`~fedguard.errors.IncompatibleError` if this component cannot be combined
        soundly with the rest of the run (``spec``: the RunSpec, ``components``: all built
        components), e.g. central DP calibrated for a clipped mean next to Krum."""


def require_positive(component: object, *field_names: str) -> None:
    """:func:`require` each named field of ``component`` to be a finite number > 0."""
    for name in field_names:
        value = getattr(component, name)
        require(math.isfinite(value) and value > 0, name, "a finite number > 0")


# --------------------------------------------------------------------------------------------
# What the core hands plugins that train: typed contracts, met structurally by the core's own
# ``FlatModel`` (fedguard.models.flat), ``ClientData`` and ``LocalTrainingConfig``
# (fedguard.core.local_training)


class ClientDataset(Protocol):
    """Every client's training data, padded: row ``c`` holds client ``c``'s samples."""

    @property
    def features(self) -> Tensor: ...  # (n_clients, max_count, *input_shape)
    @property
    def labels(self) -> Tensor: ...  # (n_clients, max_count, ...)
    @property
    def counts(self) -> Tensor: ...  # (n_clients,) real samples per row


class TrainableModel(Protocol):
    """A model as one flat parameter vector ``(d,)`` (trainable parameters only)."""

    @property
    def module(self) -> torch.nn.Module: ...

    def initial_params(self) -> Tensor: ...

    def forward(self, flat: Tensor, x: Tensor) -> Tensor: ...


class LocalTrainingSpec(Protocol):
    """The clients' local-training hyper-parameters."""

    @property
    def algorithm(self) -> str: ...
    @property
    def local_epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def prox_mu(self) -> float: ...


class LocalTrainer(Protocol):
    """Trains ``client_ids`` from ``global_params`` (``(d,)``, or ``(n, d)`` per-client starts)
    and returns their deltas ``(n, d)``; every draw is keyed by ``seed`` and ``round_index``."""

    def __call__(
        self,
        model: Any,
        global_params: Tensor,
        data: Any,
        client_ids: Sequence[int],
        cfg: Any,
        seed: int,
        round_index: int,
    ) -> Tensor: ...


# --------------------------------------------------------------------------------------------
# Aggregation


class Aggregator(Component):
    """``(n, d)`` updates and optional ``(n,)`` weights → :class:`AggregationResult`."""

    #: False for rules that only need the sum (they run under secure aggregation).
    requires_individual_updates: ClassVar[bool] = True
    #: True for rules that need the server's own root-dataset update (FLTrust).
    needs_reference_update: ClassVar[bool] = False

    def __call__(
        self, updates: Tensor, weights: Tensor | None, ctx: AggregationContext
    ) -> AggregationResult:
        raise NotImplementedError  # abstract

    def from_sum(self, update_sum: Tensor, weight_sum: float) -> Tensor:
        """Aggregate from the sum alone (secure aggregation); only for sum-based rules."""
        raise ConfigError(
            f"aggregator {self.registry_name!r} needs individual updates and cannot run under "
            "secure aggregation."
        )

    def l2_sensitivity(self, clip_norm: float, n_clients: int) -> float | None:
        """L2 sensitivity of the output when one client's clipped update changes, or ``None``
        when no bound is derived (central DP with this rule is then ``incompatible``)."""
        return None


class PreAggregator(Component):
    """``(n, d)`` → ``(m, d)``, applied before an aggregator (e.g. ``nnm+krum``)."""

    def __call__(self, updates: Tensor, ctx: AggregationContext) -> Tensor:
        raise NotImplementedError  # abstract


# --------------------------------------------------------------------------------------------
# Transforms (client side and server side)


@dataclass(frozen=True)
class TransformContext:
    """What a client or server transform is told.

    ``state`` is the transform's own state from the previous round (per-client momenta, ...).
    ``sampling`` describes how clients were sampled: ``{"scheme": "poisson"|"fixed"|"all",
    "rate": q, "expected_cohort": qN, "population": N}`` — privacy mechanisms need it.
    """

    round: RoundContext
    client_ids: tuple[int, ...]
    state: Mapping[str, Any] = field(default_factory=dict)
    sampling: Mapping[str, Any] = field(default_factory=dict)
    aggregator: Aggregator | None = None
    #: the flat vector's :class:`fedguard.models.flat.ParamLayout` (payload policies that send
    #: parts of the model by name, e.g. FedRand's LoRA A/B parts); None where not needed
    layout: Any = None


@dataclass(frozen=True)
class TransformOutput:
    """New values, the privacy events the transform caused, and its state for the next round."""

    values: Tensor
    events: tuple[PrivacyEvent | ClientEvent | UnitEvent, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)


class ClientTransform(Component):
    """Applied to the ``(n, d)`` updates of the round's honest clients, batched over clients."""

    #: True for a transform that *is* the local training (DP-SGD): the round loop calls
    #: :meth:`train` instead of the plain trainer and does not call the transform afterwards.
    replaces_local_training: ClassVar[bool] = False

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        raise NotImplementedError  # abstract

    def train(
        self,
        model: TrainableModel,
        global_params: Tensor,
        clients: ClientDataset,
        local: LocalTrainingSpec,
        ctx: TransformContext,
    ) -> TransformOutput:
        """Local training of ``ctx.client_ids`` (only when ``replaces_local_training``): the
        ``(n, d)`` deltas and the privacy events of the training itself."""
        raise NotImplementedError  # abstract


class ServerTransform(Component):
    """Applied to the ``(d,)`` aggregate (e.g. central DP noise)."""

    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        raise NotImplementedError  # abstract


# --------------------------------------------------------------------------------------------
# Transport


@dataclass(frozen=True)
class TransportOutput:
    """What the server receives: individual updates (plain) or only their sum (secure aggregation)."""

    updates: Tensor | None  # (n, d) or None
    update_sum: Tensor  # (d,)
    weight_sum: float
    events: tuple[PrivacyEvent | ClientEvent, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)  # cost: bytes, seconds, dropouts


class Transport(Component):
    reveals_individual_updates: ClassVar[bool] = True

    def __call__(self, updates: Tensor, weights: Tensor, ctx: RoundContext) -> TransportOutput:
        raise NotImplementedError  # abstract


# --------------------------------------------------------------------------------------------
# Attacks


@dataclass(frozen=True)
class AttackContext:
    """What a model-poisoning attack may use.

    ``own_updates`` are the honest updates the malicious clients computed on their own data;
    ``aggregator`` simulates the server's rule on a full ``(n, d)`` tensor and is given only to
    attacks whose threat model grants knowledge of the rule (``knows_aggregator``).
    """

    round: int
    n_malicious: int
    n_clients: int  # clients in this round, honest + malicious
    generator: torch.Generator
    global_params: Tensor
    own_updates: Tensor  # (b, d)
    aggregator_name: str = "mean"
    n_byzantine: int = 0
    aggregator: Callable[[Tensor], Tensor] | None = None


class ModelAttack(Component):
    """``honest (h, d)`` → ``(b, d)`` malicious updates."""

    #: Omniscient attacks see the honest updates; the others receive only their own updates as
    #: ``honest``.
    omniscient: ClassVar[bool] = True
    knows_aggregator: ClassVar[bool] = False

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        raise NotImplementedError  # abstract


class DataAttack(Component):
    """Poisons a malicious client's local data once, when the data is partitioned."""

    def poison(
        self, features: Tensor, labels: Tensor, n_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # abstract

    def triggered(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | None:
        """Test inputs with the trigger and the attacker's target labels (backdoors), else None."""
        return None


@dataclass(frozen=True)
class FreeRiderContext:
    round: int
    global_params: Tensor  # (d,)
    global_deltas: Sequence[Tensor]  # earlier rounds' global model changes, oldest first
    generator: torch.Generator
    client_id: int = -1


class FreeRider(Component):
    """Emits an update without training."""

    def __call__(self, ctx: FreeRiderContext) -> Tensor:
        raise NotImplementedError  # abstract


class PrivacyAttack(Component):
    """An observer of the :class:`ServerView`; scored only afterwards against :class:`Truth`.

    ``env`` is the :class:`~fedguard.core.knowledge.AttackerKnowledge` the core builds from the
    threat model (architecture, public facts, data description, candidate pool) — never the
    simulation or the truth. Unit tests may pass an attack's own task object instead.
    """

    #: What this attack's threat model grants beyond the ServerView and the public facts: a
    #: subset of ``{"architecture", "candidates"}`` (:data:`fedguard.core.knowledge.GRANTS`);
    #: the core leaves the rest of the AttackerKnowledge ``None``.
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture", "candidates"})

    def observe(self, view: ServerView, env: AttackerKnowledge | Any) -> Any:
        raise NotImplementedError  # abstract

    def metrics(self, output: Any, truth: Truth) -> dict[str, float]:
        raise NotImplementedError  # abstract

    def check_model(
        self, model: torch.nn.Module, input_shape: tuple[int, ...], n_classes: int
    ) -> None:
        """Raise :class:`~fedguard.errors.IncompatibleError` (one sentence naming the layer it
        needs) if this attack cannot work on ``model``, the run's module as built for its data
        (one sample shaped ``input_shape``). The core calls it once, after building the model
        and before any training (:func:`fedguard.core.model_checks.check_attacks_fit_model`).
        Nothing by default."""

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        """Write files a report shows (image grids, ROC data) under ``directory``; return
        ``{caption: file name}``. Nothing by default."""
        return {}


# --------------------------------------------------------------------------------------------
# Broadcast, client checks and what clients send (stages of the round, see fedguard.core.round)


@dataclass(frozen=True)
class BroadcastContext:
    """What a server-side broadcast component is told: the round (its keyed generators and the
    sampled clients), the layout of the flat parameter vector — ``layout.names``,
    ``layout.shapes``, ``layout.offsets`` (:class:`fedguard.models.flat.ParamLayout`) — the
    task's public shape, and the attacker knowledge (e.g. public data to estimate a feature's
    distribution)."""

    round: RoundContext
    layout: Any  # fedguard.models.flat.ParamLayout
    input_shape: tuple[int, ...]
    n_classes: int
    #: what the server's threat model grants it (public data, the architecture): the
    #: :class:`~fedguard.core.knowledge.AttackerKnowledge` of privacy attacks; ``None`` if not given
    knowledge: AttackerKnowledge | None = None


class ServerBroadcast(Component):
    """Chooses the model the sampled clients receive (a malicious server modifies it, possibly
    per client). A privacy attack that also subclasses this is applied at the broadcast stage
    (at most one per run) and sees what it sent in :attr:`ServerView.broadcast`."""

    def broadcast(self, global_params: Tensor, ctx: BroadcastContext) -> BroadcastPlan:
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class ClientCheckOutput:
    """``alarms``: ``(n,)`` bool, True where a client refuses the round; ``scores``: the
    statistic each client computed (for detection curves); ``state`` for the next round."""

    alarms: Tensor
    scores: Tensor | None = None
    state: Mapping[str, Any] = field(default_factory=dict)


class ClientCheck(Component):
    """A client-side inspection of the received model, run by every sampled client before it
    trains; a client that raises an alarm drops out of the round (recorded, not trained)."""

    def check(self, received: Tensor, layout: Any, ctx: TransformContext) -> ClientCheckOutput:
        """``received``: ``(n, d)`` models the clients of ``ctx.client_ids`` received."""
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class Payload:
    """What the clients send: ``values`` ``(n, d)`` is zero outside ``mask`` (``(n, d)`` bool,
    the coordinates each client sends; ``None`` = all of them). The server aggregates each
    coordinate over the clients that sent it."""

    values: Tensor
    mask: Tensor | None = None
    state: Mapping[str, Any] = field(default_factory=dict)


class PayloadPolicy(Component):
    """What a client trains from and what it sends back (FedRand keeps part of each adapter
    private across rounds). ``ctx.state`` is the policy's state from the previous round."""

    def receive(self, received: Tensor, ctx: TransformContext) -> Tensor:
        """``(n, d)`` starting points from the ``(n, d)`` received models (default: as is)."""
        return received

    def send(self, deltas: Tensor, starts: Tensor, ctx: TransformContext) -> Payload:
        """The :class:`Payload` of the ``(n, d)`` trained ``deltas`` (from ``starts``)."""
        return Payload(deltas)


__all__ = [
    "AggregationContext",
    "AggregationResult",
    "Aggregator",
    "AttackContext",
    "BroadcastContext",
    "BroadcastPlan",
    "ClientCheck",
    "ClientCheckOutput",
    "ClientDataset",
    "ClientTransform",
    "Component",
    "DataAttack",
    "FreeRider",
    "FreeRiderContext",
    "LocalTrainer",
    "LocalTrainingSpec",
    "ModelAttack",
    "Payload",
    "PayloadPolicy",
    "PreAggregator",
    "PrivacyAttack",
    "RoundContext",
    "ServerBroadcast",
    "ServerTransform",
    "ServerView",
    "TrainableModel",
    "TransformContext",
    "TransformOutput",
    "Transport",
    "TransportOutput",
    "Truth",
    "require",
]
