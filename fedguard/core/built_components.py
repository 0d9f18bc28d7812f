"""The plugins of one run, built: what the core trains with (the registry layer builds them,
:func:`fedguard.components.build_components`)."""

from __future__ import annotations

from dataclasses import dataclass

from fedguard.api import (
    Aggregator,
    ClientCheck,
    ClientTransform,
    DataAttack,
    FreeRider,
    ModelAttack,
    PayloadPolicy,
    PreAggregator,
    PrivacyAttack,
    ServerTransform,
    Transport,
)
from fedguard.data.datasets import DatasetSource
from fedguard.data.partition import Partitioner
from fedguard.models.base import ModelSpec


@dataclass(frozen=True)
class Components:
    """A run's built plugins, each typed by its kind's contract (:mod:`fedguard.api`)."""

    dataset: DatasetSource
    partitioner: Partitioner
    model: ModelSpec
    aggregator: Aggregator
    preaggregators: tuple[PreAggregator, ...]
    client_transforms: tuple[ClientTransform, ...]
    server_transforms: tuple[ServerTransform, ...]
    transport: Transport
    model_attack: ModelAttack | None
    data_attack: DataAttack | None
    free_rider: FreeRider | None
    privacy_attacks: tuple[PrivacyAttack, ...]
    client_checks: tuple[ClientCheck, ...] = ()
    payload: PayloadPolicy | None = None
