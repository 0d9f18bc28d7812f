"""The typed state one round passes from stage to stage (see :mod:`fedguard.core.round_stages`).

A stage reads what earlier stages left here and fills its own fields; a stage that ends the round
early sets :attr:`RoundState.outcome` and the pipeline goes straight to its one exit
(:func:`fedguard.core.round_stages.finish`), which evaluates, times and builds the next
:class:`~fedguard.core.simulation.SimulationState` the same way for every outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from torch import Tensor

from fedguard.api import TransportOutput
from fedguard.privacy.round_events import RoundEvents
from fedguard.types import AggregationResult, BroadcastPlan, RoundContext, ServerView


class RoundOutcome(Enum):
    """How a round ended. Every outcome but ``ABORTED`` and ``DIVERGED`` updates the model."""

    COMPLETED = "completed"
    #: an empty Poisson draw: the server still releases its noised (zero) aggregate, so that an
    #: empty cohort is indistinguishable from a non-empty one (and accounted)
    EMPTY = "empty"
    #: a Poisson cohort below the aggregation rule's bound (Krum's n > 2f + 2): the aggregate is
    #: zero this round, server transforms (central noise) still run
    BELOW_BOUND = "below_bound"
    #: the transport could not complete (too few survivors to unmask): nothing changes
    ABORTED = "aborted"
    #: a non-finite update, aggregate, model or test loss: the last finite model is kept and the
    #: run stops
    DIVERGED = "diverged"


@dataclass
class RoundState:
    """Everything the stages of one round share; one instance per round, never persisted."""

    ctx: RoundContext
    started: float
    record: dict[str, Any]
    #: a coalition the cohort is restricted to (valuation's retraining), None: everybody
    allowed: frozenset[int] | None = None
    #: the round's privacy events, typed until the ledger entry serialises them
    events: RoundEvents = field(default_factory=RoundEvents)
    outcome: RoundOutcome = RoundOutcome.COMPLETED
    why: str = ""  # the reason of an early outcome, for the record

    # sample
    ids: tuple[int, ...] = ()
    counts: list[int] = field(default_factory=list)
    weights: Tensor | None = None  # (n,)
    #: which sampled clients act maliciously / free-ride this round (inside the attack window)
    attacking: bool = False

    # broadcast and client checks
    plan: BroadcastPlan | None = None
    starts: Tensor | None = None  # (n, d) per-client starting points, None: all global params
    alarms: list[int] = field(default_factory=list)
    check_states: list[dict[str, Any]] = field(default_factory=list)

    # local training, payload, client transforms, attacks
    deltas: Tensor | None = None  # (n, d)
    train_seconds: float = 0.0
    sent_mask: Tensor | None = None  # (n, d) bool
    payload_state: dict[str, Any] | None = None
    replaced_state: dict[str, Any] | None = None  # of a transform that replaced training
    client_transform_states: list[dict[str, Any]] = field(default_factory=list)

    # finite check, transport, observe
    faulty: list[int] = field(default_factory=list)
    kept_ids: tuple[int, ...] = ()
    kept_counts: tuple[int, ...] = ()
    transported: TransportOutput | None = None
    view: ServerView | None = None

    # aggregation and server update
    result: AggregationResult | None = None
    params: Tensor | None = None  # the new global model
    server_state: dict[str, Tensor] | None = None
    server_transform_states: list[dict[str, Any]] | None = None
    saved: dict[str, Tensor] | None = None

    def end(self, outcome: RoundOutcome, why: str = "") -> None:
        """End the round early with ``outcome`` (the pipeline skips to its exit)."""
        self.outcome, self.why = outcome, why

    @property
    def ended(self) -> bool:
        return self.outcome is not RoundOutcome.COMPLETED


__all__ = ["RoundOutcome", "RoundState"]
