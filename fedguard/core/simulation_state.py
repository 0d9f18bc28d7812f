"""What a run keeps between rounds (checkpointed) and what one round hands the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from fedguard.privacy.round_events import RoundEvents
from fedguard.types import ServerView


@dataclass
class SimulationState:
    """Everything a resume needs (saved to ``state.pt`` after each round)."""

    round: int  # rounds completed
    params: Tensor
    server_state: dict[str, Tensor] = field(default_factory=dict)
    aggregator_state: dict[str, Any] = field(default_factory=dict)
    client_transform_states: list[dict[str, Any]] = field(default_factory=list)
    server_transform_states: list[dict[str, Any]] = field(default_factory=list)
    global_deltas: list[Tensor] = field(default_factory=list)
    client_check_states: list[dict[str, Any]] = field(default_factory=list)
    payload_state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "params": self.params,
            "server_state": self.server_state,
            "aggregator_state": dict(self.aggregator_state),
            "client_transform_states": [dict(s) for s in self.client_transform_states],
            "server_transform_states": [dict(s) for s in self.server_transform_states],
            "global_deltas": self.global_deltas,
            "client_check_states": [dict(s) for s in self.client_check_states],
            "payload_state": dict(self.payload_state),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SimulationState:
        return SimulationState(**d)


@dataclass(frozen=True)
class RoundOutput:
    record: dict[str, Any]
    events: RoundEvents  # typed privacy events; the runner's ledger entry serialises them
    view: ServerView | None
    updates: dict[str, Tensor] | None  # what the server saw, for --save-updates


__all__ = ["RoundOutput", "SimulationState"]
