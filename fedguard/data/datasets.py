"""Bundled and user datasets, registered by name (no network access at run time)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedguard.api import Component, require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.shuffle_split import digits_arrays
from fedguard.errors import ConfigError

if TYPE_CHECKING:  # pandas is imported only where a CSV is read (start-up without it)
    import pandas as pd


class DatasetSource(Component):
    def load(self) -> Dataset:
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class DigitsDataset(DatasetSource):
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), pixels scaled to [0, 1]."""

    def load(self) -> Dataset:
        images, target = digits_arrays()  # load_digits' file, without importing scikit-learn
        x = images.astype(np.float32) / 16.0
        return from_arrays(x[:, None], target, "digits", (1, 8, 8), (0.0, 1.0))


@dataclass(frozen=True)
class BreastCancerDataset(DatasetSource):
    """scikit-learn's Wisconsin breast cancer table (569 rows, 30 features, binary), standardized."""

    def load(self) -> Dataset:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        x = bunch.data
        x = (x - x.mean(0)) / x.std(0)
        return from_arrays(x.astype(np.float32), bunch.target, "breast_cancer")


@dataclass(frozen=True)
class SyntheticDataset(DatasetSource):
    """Gaussian-cluster classification data (scikit-learn ``make_classification``)."""

    n_samples: int = 2000
    n_features: int = 20
    n_classes: int = 4
    n_informative: int = 10
    class_separation: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_samples >= 10, "dataset.n_samples", "at least 10")
        require(self.n_features >= 2, "dataset.n_features", "at least 2")
        require(self.n_classes >= 2, "dataset.n_classes", "at least 2")
        require(
            2 <= self.n_informative <= self.n_features,
            "dataset.n_informative",
            "between 2 and n_features",
        )
        require(
            self.n_classes <= 2**self.n_informative,
            "dataset.n_classes",
            "at most 2**n_informative",
        )

    def load(self) -> Dataset:
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=self.n_samples,
            n_features=self.n_features,
            n_informative=self.n_informative,
            n_redundant=0,
            n_classes=self.n_classes,
            n_clusters_per_class=1,
            class_sep=self.class_separation,
            random_state=self.seed,
        )
        return from_arrays(x.astype(np.float32), y, "synthetic")


@dataclass(frozen=True)
class CsvDataset(DatasetSource):
    """A user CSV file: numeric feature columns plus one label column named in the config."""

    path: str = ""
    label_column: str = "label"
    client_column: str = ""  # optional: natural client of each row (``partition: natural``)

    def __post_init__(self) -> None:
        require(bool(self.path), "dataset.path", "the path of a CSV file")

    def load(self) -> Dataset:
        import pandas as pd

        path = _existing(self.path)
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise ConfigError(
                f"dataset.path {self.path!r} is not a readable CSV file: {exc}"
            ) from exc
        if self.label_column not in frame.columns:
            cols = ", ".join(map(str, frame.columns))
            raise ConfigError(
                f"dataset.label_column {self.label_column!r} is not a column of {self.path}; "
                f"columns: {cols}."
            )
        labels = frame.pop(self.label_column).to_numpy()
        groups = _client_column(frame, self.client_column, self.path)
        bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ConfigError(f"dataset column {bad[0]!r} in {self.path} is not numeric.")
        if pd.isna(labels).any():
            raise ConfigError(f"dataset label column {self.label_column!r} has missing values.")
        return from_arrays(frame.to_numpy(np.float32), labels, path.stem, groups=groups)


@dataclass(frozen=True)
class NpzDataset(DatasetSource):
    """A user ``.npz`` file with arrays ``X`` (N, ...) and ``y`` (N,), optionally a client-id
    array (N,) named by ``client_array`` (natural clients, ``partition: natural``)."""

    path: str = ""
    client_array: str = ""

    def __post_init__(self) -> None:
        require(bool(self.path), "dataset.path", "the path of an .npz file")

    def load(self) -> Dataset:
        path = _existing(self.path)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                missing = {"X", "y"} - set(arrays.files)
                if missing:
                    raise ConfigError(
                        f"dataset.path {self.path!r} must contain arrays 'X' and 'y'; "
                        f"missing {sorted(missing)}."
                    )
                if self.client_array and self.client_array not in arrays.files:
                    raise ConfigError(
                        f"dataset.client_array {self.client_array!r} is not an array of "
                        f"{self.path}; arrays: {', '.join(arrays.files)}."
                    )
                x, y = arrays["X"], arrays["y"]
                groups = arrays[self.client_array] if self.client_array else None
        except (ValueError, OSError) as exc:
            raise ConfigError(f"dataset.path {self.path!r} is not a readable .npz file.") from exc
        shape = tuple(int(s) for s in x.shape[1:])
        return from_arrays(x.astype(np.float32), y, path.stem, shape, groups=groups)


def _client_column(frame: pd.DataFrame, column: str, path: str) -> np.ndarray | None:
    """Pop the optional natural-client column out of the feature table."""
    if not column:
        return None
    if column not in frame.columns:
        cols = ", ".join(map(str, frame.columns))
        raise ConfigError(
            f"dataset.client_column {column!r} is not a column of {path}; columns: {cols}."
        )
    return frame.pop(column).to_numpy()


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"dataset.path {path!r} does not exist or is not a file.")
    return p
