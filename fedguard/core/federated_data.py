"""The federated view of a dataset: split, partitioned, attacked clients' data poisoned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from fedguard.core.local_training import ClientData
from fedguard.data.dataset import Dataset, split
from fedguard.data.normalize import standardize
from fedguard.data.partition import partition_report
from fedguard.rng import numpy_generator, torch_generator


@dataclass(frozen=True)
class FederatedData:
    clients: ClientData
    validation: Dataset
    test: Dataset
    train: Dataset
    partition: list[np.ndarray]  # client → indices into ``train``
    n_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] | None
    #: training-split mean/std applied to all splits (None: features used as loaded)
    normalization: dict | None = None
    #: every client's data before poisoning (kept only when an attack window needs it)
    clean_clients: ClientData | None = None
    #: text: the secret formats (public) and the planted secrets (ground truth), each secret's
    #: ``client`` the index of the client holding it (-1: no one client, e.g. not partitioned
    #: by author)
    secret_formats: tuple = ()
    secrets: tuple = ()

    def client_arrays(self, client: int) -> tuple[Tensor, Tensor]:
        n = int(self.clients.counts[client])
        return self.clients.features[client, :n], self.clients.labels[client, :n]

    def report(self) -> list[dict]:
        return partition_report(self.train.labels.numpy(), self.partition, self.n_classes)


def build_federated_data(
    dataset: Dataset,
    partitioner,
    n_clients: int,
    test_fraction: float,
    validation_fraction: float,
    seed: int,
    data_attack=None,
    malicious: tuple[int, ...] = (),
    duplicates: Mapping[int, int] | None = None,
    keep_clean: bool = False,
) -> FederatedData:
    """Split, partition, copy duplicated clients' data (``{target: source}``: the target's own
    share is replaced by an exact copy of the source's), then poison malicious clients' data."""
    train, val, test = split(dataset, test_fraction, validation_fraction, seed)
    (train, val, test), normalization = standardize(train, val, test)
    rng = numpy_generator(seed, -1, -1, "partition")
    if getattr(partitioner, "uses_natural_clients", False):  # one client per writer/user
        groups = None if train.groups is None else train.groups.numpy()
        parts = partitioner.split_groups(groups, n_clients, rng)
    else:
        parts = partitioner.split(train.labels.numpy(), n_clients, rng)
    for target, source in (duplicates or {}).items():
        parts[target] = parts[source].copy()
    feats = [train.features[p] for p in parts]
    labels = [train.labels[p] for p in parts]
    # silos of many users (a user id column and a partitioner that does not make one client per
    # user): every record keeps its user id, for user-level DP across silos
    users = None
    if train.groups is not None and not getattr(partitioner, "uses_natural_clients", False):
        users = [train.groups[torch.as_tensor(p, dtype=torch.long)] for p in parts]
    clean = ClientData.pad(feats, labels, users) if keep_clean and data_attack is not None else None
    if data_attack is not None:
        for cid in malicious:
            gen = torch_generator(seed, -1, cid, "data_attack")
            feats[cid], labels[cid] = data_attack.poison(
                feats[cid], labels[cid], dataset.n_classes, gen
            )
    if users is not None and any(len(u) != len(y) for u, y in zip(users, labels, strict=True)):
        users = None  # a data attack changed a client's record count: ids no longer line up
    return FederatedData(
        ClientData.pad(feats, labels, users),
        val,
        test,
        train,
        parts,
        dataset.n_classes,
        dataset.input_shape,
        train.value_range,
        normalization,
        clean,
        dataset.secret_formats,
        _secrets_by_client(dataset, train, parts, partitioner),
    )


def _secrets_by_client(
    dataset: Dataset, train: Dataset, parts: list[np.ndarray], partitioner
) -> tuple:
    """The planted secrets with ``client`` = the client (row of the partition) of their author."""
    if not dataset.secrets:
        return ()
    owner: dict[int, int] = {}
    if getattr(partitioner, "uses_natural_clients", False) and train.groups is not None:
        owner = {int(train.groups[p[0]]): c for c, p in enumerate(parts) if len(p)}
    return tuple(replace(s, client=owner.get(s.client, -1)) for s in dataset.secrets)
