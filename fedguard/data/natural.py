"""The ``natural`` partitioner: one client per writer, speaker or user of the dataset.

Datasets that ship their own client structure (LEAF's ``users``, a client-id column of a
Parquet/CSV/NPZ file) attach a natural-client id to every sample; this partitioner keeps it,
instead of inventing a synthetic split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedguard.api import require
from fedguard.data.partition import Partitioner
from fedguard.errors import ConfigError


@dataclass(frozen=True)
class Natural(Partitioner):
    """One client per natural group, ``clients.n_clients`` groups chosen by a seeded draw.

    Only groups with at least ``min_samples`` training samples are eligible; ``max_clients``
    (optional) caps the eligible population before the draw, as LEAF's ``--u`` fraction does, so
    a config states the largest population it was designed for. The samples of groups that are not
    drawn are not used for training (they stay in the validation and test splits).

    References
    ----------
    Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018 (natural per-writer,
    per-speaker and per-user clients of FEMNIST, Shakespeare and Sent140).
    """

    min_samples: int = 1
    max_clients: int | None = None

    uses_natural_clients = True

    def __post_init__(self) -> None:
        require(self.min_samples >= 1, "partition.min_samples", "at least 1")
        require(
            self.max_clients is None or self.max_clients >= 1,
            "partition.max_clients",
            "a positive number of clients (or omit it)",
        )

    def split_groups(
        self, groups: np.ndarray | None, n_clients: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Training-set indices of each of ``n_clients`` drawn groups (sorted by group id)."""
        if groups is None:
            raise ConfigError(
                "partition 'natural' needs a dataset with natural clients (leaf, or a "
                "client_column in csv/npz/parquet); this dataset has none."
            )
        counts = np.bincount(groups)
        eligible = np.flatnonzero(counts >= self.min_samples)
        if self.max_clients is not None and len(eligible) > self.max_clients:
            eligible = np.sort(rng.choice(eligible, self.max_clients, replace=False))
        if n_clients > len(eligible):
            raise ConfigError(
                f"clients.n_clients ({n_clients}) exceeds the {len(eligible)} natural clients "
                f"with at least partition.min_samples={self.min_samples} training samples"
                + (f" (partition.max_clients={self.max_clients})" if self.max_clients else "")
                + "; lower clients.n_clients or partition.min_samples."
            )
        chosen = np.sort(rng.choice(eligible, n_clients, replace=False))
        return [np.flatnonzero(groups == g) for g in chosen]

    def _split(self, labels: np.ndarray, n_clients: int, rng: np.random.Generator):
        raise ConfigError(
            "partition 'natural' needs a dataset with natural clients (leaf, or a client_column "
            "in csv/npz/parquet); this dataset has none."
        )
