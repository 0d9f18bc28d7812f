"""CIFAR-10 / CIFAR-100 from the official python-pickle batches.

The archives (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``) hold pickled dicts with a
``data`` array (N, 3072) uint8 — 1024 red, then green, then blue values of a 32×32 image, row-major
— and a label list (``labels``; CIFAR-100: ``fine_labels`` / ``coarse_labels``). They are read with
:func:`fedguard.data.safe_pickle.load_restricted`: a data folder from someone else never runs code.
The official training and test batches are pooled; fedguard's seeded split makes its own.

References
----------
Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedguard.data.cache import dataset_dir
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource
from fedguard.data.safe_pickle import load_restricted
from fedguard.errors import ConfigError

#: folder inside the official archive, batch files, label key
LAYOUTS: dict[str, tuple[str, tuple[str, ...], bytes]] = {
    "cifar10": (
        "cifar-10-batches-py",
        (
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
        ),
        b"labels",
    ),
    "cifar100": ("cifar-100-python", ("train", "test"), b"fine_labels"),
}
PIXELS = 3 * 32 * 32


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) of one batch file, checked field by field."""
    batch = load_restricted(path.read_bytes(), f"CIFAR batch {path}")
    if not isinstance(batch, dict):
        raise ConfigError(f"CIFAR batch {path} must hold a dict; it holds {type(batch).__name__}.")
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ConfigError(f"CIFAR batch {path} must hold 'data' as a uint8 array (N, {PIXELS}).")
    if data.shape[1] != PIXELS:
        raise ConfigError(f"CIFAR batch {path} has rows of {data.shape[1]} values, not {PIXELS}.")
    if not isinstance(labels, list | np.ndarray) or len(labels) != data.shape[0]:
        raise ConfigError(
            f"CIFAR batch {path} must hold {label_key.decode()!r} as a list of "
            f"{data.shape[0]} integer labels."
        )
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"CIFAR batch {path} has non-integer {label_key.decode()!r}.")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def load_cifar(name: str, directory: str | None, normalize: bool) -> Dataset:
    folder, files, label_key = LAYOUTS[name]
    root = dataset_dir(name, directory) / folder
    xs, ys = [], []
    for file in files:
        path = root / file
        if not path.is_file():
            raise ConfigError(
                f"dataset {name!r} is incomplete: {path} is missing; fetch it again with "
                f"`fedguard data fetch {name}`."
            )
        x, y = read_batch(path, label_key)
        xs.append(x)
        ys.append(y)
    pixels = np.concatenate(xs).astype(np.float32) / 255.0
    return from_arrays(
        pixels,
        np.concatenate(ys),
        name,
        (3, 32, 32),
        (0.0, 1.0),
        normalize="channel" if normalize else None,
    )


@dataclass(frozen=True)
class Cifar10Dataset(DatasetSource):
    """CIFAR-10 (60,000 32×32 colour images, 10 classes) from ``fedguard data fetch cifar10``.

    ``normalize`` standardises each colour channel with the mean and standard deviation of the
    training split only (pixels are in [0, 1] otherwise). ``dir`` overrides the cache directory.
    """

    dir: str = ""
    normalize: bool = True

    def load(self) -> Dataset:
        return load_cifar("cifar10", self.dir or None, self.normalize)


@dataclass(frozen=True)
class Cifar100Dataset(DatasetSource):
    """CIFAR-100 (60,000 32×32 colour images, 100 fine classes) from ``fedguard data fetch
    cifar100``; ``normalize`` and ``dir`` as for ``cifar10``."""

    dir: str = ""
    normalize: bool = True

    def load(self) -> Dataset:
        return load_cifar("cifar100", self.dir or None, self.normalize)
