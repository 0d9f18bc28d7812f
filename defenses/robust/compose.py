"""Composition of pre-aggregators with an aggregator: lives in the core
(:mod:`fedguard.core.compose`), because the round loop applies it; re-exported here."""

from __future__ import annotations

from fedguard.core.compose import (
    ComposedAggregator,
    ComposedAggregatorWithReference,
    compose,
    split_name,
)

__all__ = [
    "ComposedAggregator",
    "ComposedAggregatorWithReference",
    "compose",
    "split_name",
]
