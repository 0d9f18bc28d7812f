"""Checks of the stacked client updates and weights shared by every aggregator.

Used by the robust rules (:mod:`defenses.robust.base`), the pre-aggregators and the composition
of pre-aggregators with an aggregator (:mod:`fedguard.core.compose`); each raises a one-sentence
:class:`~fedguard.errors.ConfigError` naming the rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedguard.errors import ConfigError


def check_updates(updates: Tensor, global_params: Tensor | None, rule: str) -> Tensor:
    """Check the stacked update tensor and return it."""
    if not isinstance(updates, Tensor) or updates.dim() != 2 or not updates.is_floating_point():
        shape = tuple(updates.shape) if isinstance(updates, Tensor) else type(updates).__name__
        raise ConfigError(
            f"aggregator {rule!r} needs updates as a floating (n_clients, d) tensor; got {shape}."
        )
    if updates.shape[0] == 0:
        raise ConfigError(f"aggregator {rule!r} needs at least one client update; got none.")
    if global_params is not None and global_params.numel() not in (0, updates.shape[1]):
        raise ConfigError(
            f"updates have d = {updates.shape[1]} columns but the global model has "
            f"{global_params.numel()} parameters; every update must be the flat model delta."
        )
    return updates


def check_weights(weights: Tensor | None, n: int, rule: str) -> Tensor | None:
    """Check the optional ``(n,)`` client weights (finite, non-negative)."""
    if weights is None:
        return None
    if (
        weights.shape != (n,)
        or not bool(torch.isfinite(weights).all())
        or bool((weights < 0).any())
    ):
        raise ConfigError(
            f"aggregator {rule!r} needs weights as n = {n} finite non-negative numbers; got "
            f"shape {tuple(weights.shape)}."
        )
    return weights


__all__ = ["check_updates", "check_weights"]
