"""Partitioners: split the training set's indices among clients.

Every partitioner returns one index array per client, each non-empty, together covering the
training set once (no sample is given to two clients).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedguard.api import Component, require
from fedguard.errors import ConfigError


class Partitioner(Component):
    def split(
        self, labels: np.ndarray, n_clients: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        if n_clients > len(labels):
            raise ConfigError(
                f"clients.n_clients ({n_clients}) must not exceed the number of training samples "
                f"({len(labels)})."
            )
        parts = self._split(labels, n_clients, rng)
        return _ensure_non_empty([np.sort(p) for p in parts], rng)

    def _split(
        self, labels: np.ndarray, n_clients: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class IID(Partitioner):
    """Uniformly random, equal-size shards."""

    def _split(self, labels: np.ndarray, n_clients: int, rng: np.random.Generator):
        return np.array_split(rng.permutation(len(labels)), n_clients)


@dataclass(frozen=True)
class Dirichlet(Partitioner):
    """Label skew: each class's samples are split by proportions drawn from Dir(α·1).

    Smaller ``alpha`` means more skew. References: Hsu, Qi & Brown, "Measuring the effects of
    non-identical data distribution for federated visual classification", 2019.
    """

    alpha: float = 0.5

    def __post_init__(self) -> None:
        require(self.alpha > 0, "partition.alpha", "a positive number (Dirichlet concentration)")

    def _split(self, labels: np.ndarray, n_clients: int, rng: np.random.Generator):
        parts: list[list[int]] = [[] for _ in range(n_clients)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            props = rng.dirichlet(np.full(n_clients, self.alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        return [np.asarray(p, dtype=np.int64) for p in parts]


@dataclass(frozen=True)
class Shards(Partitioner):
    """Pathological non-IID (McMahan et al. 2017): sort by label, cut into
    ``classes_per_client × n_clients`` shards, give each client ``classes_per_client`` shards."""

    classes_per_client: int = 2

    def __post_init__(self) -> None:
        require(self.classes_per_client >= 1, "partition.classes_per_client", "at least 1")

    def _split(self, labels: np.ndarray, n_clients: int, rng: np.random.Generator):
        n_shards = n_clients * self.classes_per_client
        if n_shards > len(labels):
            raise ConfigError(
                "partition.classes_per_client × clients.n_clients must not exceed the number of "
                f"training samples ({len(labels)})."
            )
        order = np.argsort(labels, kind="stable")
        shards = np.array_split(order, n_shards)
        assignment = rng.permutation(n_shards).reshape(n_clients, self.classes_per_client)
        return [np.concatenate([shards[s] for s in row]) for row in assignment]


@dataclass(frozen=True)
class QuantitySkew(Partitioner):
    """Client sizes proportional to draws from a power law (Pareto tail ``exponent``)."""

    exponent: float = 1.5

    def __post_init__(self) -> None:
        require(self.exponent > 0, "partition.exponent", "a positive number")

    def _split(self, labels: np.ndarray, n_clients: int, rng: np.random.Generator):
        weights = rng.pareto(self.exponent, n_clients) + 1.0
        extra = len(labels) - n_clients  # one sample each is reserved
        sizes = 1 + np.floor(weights / weights.sum() * extra).astype(int)
        sizes[np.argmax(sizes)] += len(labels) - sizes.sum()
        return np.split(rng.permutation(len(labels)), np.cumsum(sizes)[:-1])


def _ensure_non_empty(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Move one sample from the largest client to each empty one (skewed draws can leave gaps)."""
    for i, p in enumerate(parts):
        if len(p) == 0:
            donor = int(np.argmax([len(q) for q in parts]))
            take = int(rng.integers(len(parts[donor])))
            parts[i] = parts[donor][take : take + 1]
            parts[donor] = np.delete(parts[donor], take)
    return parts


def partition_report(labels: np.ndarray, parts: list[np.ndarray], n_classes: int) -> list[dict]:
    """Samples and label histogram per client (of target tokens for next-token windows)."""
    return [
        {
            "client": i,
            "samples": len(p),
            "labels": np.bincount(labels[p].reshape(-1), minlength=n_classes).tolist(),
        }
        for i, p in enumerate(parts)
    ]
