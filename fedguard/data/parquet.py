"""Parquet tables (pyarrow) with named feature, label and client-id columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedguard.api import require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource
from fedguard.errors import ConfigError


@dataclass(frozen=True)
class ParquetDataset(DatasetSource):
    """A Parquet file: ``feature_columns`` (default: every numeric column other than the label
    and client columns), ``label_column``, and optionally ``client_column`` whose values define
    natural clients (``partition: natural``). A column may hold fixed-length numeric lists (an
    image or embedding per row); ``input_shape`` then reshapes each row's values.

    ``normalize`` standardises each feature with the training split's statistics only.
    """

    path: str = ""
    label_column: str = "label"
    feature_columns: tuple[str, ...] = ()
    client_column: str = ""
    input_shape: tuple[int, ...] = ()
    normalize: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_columns", tuple(self.feature_columns))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        require(bool(self.path), "dataset.path", "the path of a Parquet file")
        require(all(s >= 1 for s in self.input_shape), "dataset.input_shape", "positive sizes")

    def read_table(self, path: Path):
        """The file as a ``pyarrow.Table`` (subclasses read other Arrow-based formats)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(
                f"dataset.path {self.path!r} is not a readable Parquet file ({exc})."
            ) from None

    def load(self) -> Dataset:
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ConfigError(f"dataset.path {self.path!r} does not exist.")
        table = self.read_table(path)
        names = table.column_names
        wanted = [self.label_column, *self.feature_columns]
        wanted += [self.client_column] if self.client_column else []
        fields = ["label_column"] + ["feature_columns"] * len(self.feature_columns)
        fields += ["client_column"] if self.client_column else []
        for field, column in zip(fields, wanted, strict=True):
            if column not in names:
                raise ConfigError(
                    f"dataset.{field} {column!r} is not a column of {self.path}; columns: "
                    f"{', '.join(names)}."
                )
        features = self.feature_columns or tuple(
            c
            for c in names
            if c not in (self.label_column, self.client_column)
            and _numeric(table.schema.field(c).type)
        )
        if not features:
            raise ConfigError(f"dataset {self.path} has no numeric feature columns.")
        columns = [_column_array(table.column(c), c, self.path) for c in features]
        x = np.concatenate([c.reshape(len(c), -1) for c in columns], axis=1)
        shape = self.input_shape or None
        if shape is not None and int(np.prod(shape)) != x.shape[1]:
            raise ConfigError(
                f"dataset.input_shape {list(shape)} holds {int(np.prod(shape))} values but each "
                f"row of {self.path} has {x.shape[1]}."
            )
        labels = table.column(self.label_column).to_numpy(zero_copy_only=False)
        if any(v is None for v in labels.tolist()) or (
            labels.dtype.kind == "f" and np.isnan(labels).any()
        ):
            raise ConfigError(f"dataset label column {self.label_column!r} has missing values.")
        groups = (
            table.column(self.client_column).to_numpy(zero_copy_only=False)
            if self.client_column
            else None
        )
        return from_arrays(
            x.astype(np.float32),
            labels,
            path.stem,
            shape,
            groups=groups,
            normalize="feature" if self.normalize else None,
        )


def _numeric(arrow_type) -> bool:
    import pyarrow.types as t

    if t.is_list(arrow_type) or t.is_fixed_size_list(arrow_type) or t.is_large_list(arrow_type):
        return _numeric(arrow_type.value_type)
    return t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_boolean(arrow_type)


def _column_array(column, name: str, path: str) -> np.ndarray:
    """(N,) or (N, k) float array of one column; lists must all have the same length."""
    if not _numeric(column.type):
        raise ConfigError(f"dataset column {name!r} in {path} is not numeric ({column.type}).")
    values = column.to_pylist()
    if any(v is None for v in values):
        raise ConfigError(f"dataset column {name!r} in {path} has missing values.")
    try:
        return np.asarray(values, dtype=np.float32)
    except ValueError:
        raise ConfigError(
            f"dataset column {name!r} in {path} holds lists of different lengths."
        ) from None
