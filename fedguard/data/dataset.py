"""In-memory labelled dataset and the seeded train/validation/test split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedguard.data.shuffle_split import train_test_indices
from fedguard.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """Features (N, *input_shape) float32 and integer labels (N,)."""

    features: Tensor
    labels: Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    name: str
    value_range: tuple[float, float] | None = None  # valid feature range (images), else None
    #: natural client of each sample (writer, speaker, user id column) as 0..G−1, else None
    groups: Tensor | None = None
    #: "channel" (images) or "feature" (tables): standardise with the TRAINING split's mean and
    #: standard deviation after the split (fedguard.data.normalize), never the whole file's
    normalize: str | None = None
    #: text datasets: the formats of planted secrets (public: their candidate spaces) and the
    #: planted secrets themselves (ground truth, ``Secret.client`` = natural group id)
    secret_formats: tuple[Any, ...] = ()
    secrets: tuple[Any, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray | Tensor) -> Dataset:
        idx = torch.as_tensor(index, dtype=torch.long)
        return Dataset(
            self.features[idx],
            self.labels[idx],
            self.n_classes,
            self.input_shape,
            self.name,
            self.value_range,
            None if self.groups is None else self.groups[idx],
            self.normalize,
            self.secret_formats,
            self.secrets,
        )


def from_arrays(
    features: np.ndarray,
    labels: np.ndarray,
    name: str,
    input_shape: tuple[int, ...] | None = None,
    value_range: tuple[float, float] | None = None,
    groups: np.ndarray | None = None,
    normalize: str | None = None,
) -> Dataset:
    """Validate raw arrays (no NaN/inf, at least 2 classes) and build a :class:`Dataset`.

    Labels of any type are mapped to 0..K−1 in sorted order of their values; so are the optional
    natural-client ids ``groups`` (one per row: writer, speaker, user).
    """
    x = np.asarray(features)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ConfigError(f"dataset {name!r} must hold a non-empty 2-D feature table.")
    if not np.issubdtype(x.dtype, np.number):
        raise ConfigError(f"dataset {name!r} has non-numeric features; only numbers are allowed.")
    if not np.all(np.isfinite(x)):
        row = int(np.argwhere(~np.isfinite(x.reshape(x.shape[0], -1)))[0, 0])
        raise ConfigError(
            f"dataset {name!r} contains NaN or infinite values (first at row {row}); "
            "clean or impute the data first."
        )
    y_raw = np.asarray(labels)
    if y_raw.shape[0] != x.shape[0]:
        raise ConfigError(f"dataset {name!r} has {x.shape[0]} rows but {y_raw.shape[0]} labels.")
    classes, y = np.unique(y_raw, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"dataset {name!r} must have at least 2 label classes.")
    shape = input_shape or tuple(x.shape[1:])
    return Dataset(
        torch.as_tensor(x.reshape(x.shape[0], *shape), dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.long),
        len(classes),
        shape,
        name,
        value_range,
        _group_ids(groups, x.shape[0], name),
        normalize,
    )


def _group_ids(groups: np.ndarray | None, rows: int, name: str) -> Tensor | None:
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != (rows,):
        raise ConfigError(f"dataset {name!r} has {rows} rows but {g.shape[0]} client ids.")
    if _missing(g).any():
        raise ConfigError(f"dataset {name!r} has missing client ids.")
    _, ids = np.unique(g, return_inverse=True)
    return torch.as_tensor(ids.reshape(-1), dtype=torch.long)


def _missing(values: np.ndarray) -> np.ndarray:
    """Missing entries of an id array of any dtype (None, NaN)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values])
    return np.zeros(values.shape, dtype=bool)


def split(
    data: Dataset, test_fraction: float, validation_fraction: float, seed: int
) -> tuple[Dataset, Dataset, Dataset]:
    """Stratified train / validation / test split, deterministic in ``seed`` (scikit-learn's
    ``train_test_split`` draws, without importing scikit-learn)."""
    index = np.arange(len(data))
    labels = data.labels.numpy()
    _check_split_size("data.test_fraction", test_fraction, labels)
    train_val, test = train_test_indices(index, test_fraction, seed, _stratify(labels))
    if validation_fraction > 0:
        rel = validation_fraction / (1.0 - test_fraction)
        _check_split_size("data.validation_fraction", rel, labels[train_val], validation_fraction)
        train, val = train_test_indices(train_val, rel, seed + 1, _stratify(labels[train_val]))
    else:
        train, val = train_val, train_val[:0]
    return data.subset(train), data.subset(val), data.subset(test)


def _check_split_size(
    field: str, fraction: float, labels: np.ndarray, shown: float | None = None
) -> None:
    """Both sides of a stratified split need at least one sample per class: a fraction that
    leaves fewer (``validation_fraction: 1e-9``) is a config error, raised before anything runs."""
    n = len(labels)
    held_out = math.ceil(fraction * n)
    need = len(np.unique(labels)) if _stratify(labels) is not None else 1
    if held_out < need or n - held_out < need:
        raise ConfigError(
            f"{field} ({shown if shown is not None else fraction:g}) splits {n} samples into "
            f"{held_out} and {n - held_out}; each side needs at least {need} (one per class)"
            + (
                ", or use 0 for no validation split."
                if field.endswith("validation_fraction")
                else "."
            )
        )


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    if labels.ndim != 1:  # sequence targets (next-token windows): a plain random split
        return None
    counts = np.bincount(labels)
    return labels if counts[counts > 0].min() >= 2 else None
