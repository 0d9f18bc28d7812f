"""Label flipping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import DataAttack, require
from fedguard.errors import ConfigError


def normalize_mapping(mapping: Any) -> tuple[tuple[int, int], ...] | None:
    """Accept ``{src: dst}`` or ``[[src, dst], ...]`` (as YAML gives them); return sorted pairs."""
    if mapping is None:
        return None
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    try:
        pairs = tuple(sorted((int(s), int(t)) for s, t in items))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            "mapping must be {source_label: target_label} pairs of integers, or null for "
            "y -> n_classes - 1 - y."
        ) from exc
    require(all(s >= 0 and t >= 0 for s, t in pairs), "mapping", "non-negative class labels")
    require(len({s for s, _ in pairs}) == len(pairs), "mapping", "one target per source label")
    return pairs


@dataclass(frozen=True)
class LabelFlip(DataAttack):
    """Relabel a malicious client's data by a fixed class mapping.

    Default mapping ``y → n_classes − 1 − y``; otherwise only the listed source labels change. A
    random ``flip_fraction`` of the client's samples (chosen with the given generator) is flipped.

    Parameters
    ----------
    mapping : tuple[tuple[int, int], ...] | None
        ``(source, target)`` pairs, or a ``{source: target}`` dict (stored as sorted pairs), or
        ``None``.
    flip_fraction : float
        Share of the client's samples that are relabelled, in (0, 1].

    References
    ----------
    Tolpegin, Truex, Gursoy, Liu. "Data Poisoning Attacks Against Federated Learning Systems."
    ESORICS 2020.
    """

    mapping: tuple[tuple[int, int], ...] | dict[int, int] | None = None
    flip_fraction: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", normalize_mapping(self.mapping))
        require(0 < self.flip_fraction <= 1, "flip_fraction", "in (0, 1]")

    def flip(self, labels: Tensor, n_classes: int) -> Tensor:
        """All labels mapped (no sampling)."""
        pairs = normalize_mapping(self.mapping)
        if pairs is None:
            return (n_classes - 1) - labels
        for s, t in pairs:
            require(s < n_classes and t < n_classes, "mapping", f"labels below {n_classes}")
        table = torch.arange(n_classes, dtype=labels.dtype)
        for s, t in pairs:
            table[s] = t
        return table[labels]

    def poison(
        self, features: Tensor, labels: Tensor, n_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        n = labels.shape[0]
        k = round(self.flip_fraction * n)
        chosen = torch.randperm(n, generator=generator)[:k]
        out = labels.clone()
        out[chosen] = self.flip(labels[chosen], n_classes)
        return features, out
