"""LEAF JSON datasets (FEMNIST, Shakespeare, Sent140) with their natural clients.

LEAF's preprocessing writes JSON files ``{"users": [...], "num_samples": [...], "user_data":
{user: {"x": [...], "y": [...]}}}`` (usually ``train/*.json`` and ``test/*.json``). Every sample
keeps its user as its natural client (``partition: natural``). Image rows (FEMNIST: 784 floats)
become (1, side, side) images; text (Shakespeare: 80-character strings; Sent140: the tweet, the
last field of ``x``) becomes character indices over LEAF's 80-letter alphabet (0 = unknown), and
string labels (Shakespeare's next character) become classes.

References
----------
Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedguard.api import require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource
from fedguard.errors import ConfigError

#: LEAF's Shakespeare alphabet (``leaf/models/utils/language_utils.py``); index 0 = unknown
ALPHABET = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
_INDEX = {c: i + 1 for i, c in enumerate(ALPHABET)}


def encode_text(text: str, length: int) -> list[int]:
    """Character indices of ``text``, cut or right-padded with 0 to ``length``."""
    codes = [_INDEX.get(c, 0) for c in text[:length]]
    return codes + [0] * (length - len(codes))


def read_leaf_files(path: Path) -> list[tuple[str, list[Any], list[Any]]]:
    """(user, xs, ys) for every user of every ``*.json`` under ``path`` (a file or folder)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    if not files:
        raise ConfigError(f"dataset.path {str(path)!r} holds no LEAF .json files.")
    rows: list[tuple[str, list[Any], list[Any]]] = []
    for file in files:
        try:
            doc = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"LEAF file {file} is not valid JSON ({type(exc).__name__})."
            ) from None
        if not isinstance(doc, dict) or not {"users", "user_data"} <= set(doc):
            raise ConfigError(f"LEAF file {file} must hold 'users' and 'user_data'.")
        counts = doc.get("num_samples", [None] * len(doc["users"]))
        for user, count in zip(doc["users"], counts, strict=False):
            data = doc["user_data"].get(user)
            if not isinstance(data, dict) or "x" not in data or "y" not in data:
                raise ConfigError(
                    f"LEAF file {file} lists user {user!r} but has no user_data with 'x' and "
                    "'y' for it."
                )
            if len(data["x"]) != len(data["y"]) or (count is not None and count != len(data["y"])):
                raise ConfigError(
                    f"LEAF file {file}: user {user!r} has {len(data['x'])} x, {len(data['y'])} y "
                    f"and num_samples {count}; they must agree."
                )
            rows.append((str(user), data["x"], data["y"]))
    return rows


@dataclass(frozen=True)
class LeafDataset(DatasetSource):
    """A LEAF dataset folder or file; every user is a natural client.

    ``sequence_length`` fixes the length of text samples (Shakespeare's are 80 characters);
    image rows of a square number of values become one-channel square images in [0, 1].
    """

    path: str = ""
    sequence_length: int = 80

    def __post_init__(self) -> None:
        require(bool(self.path), "dataset.path", "a LEAF data folder or .json file")
        require(self.sequence_length >= 1, "dataset.sequence_length", "at least 1")

    def load(self) -> Dataset:
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ConfigError(f"dataset.path {self.path!r} does not exist.")
        users, xs, ys = [], [], []
        for user, x, y in read_leaf_files(path):
            users += [user] * len(y)
            xs += x
            ys += y
        if not ys:
            raise ConfigError(f"dataset.path {self.path!r} holds no LEAF samples.")
        name = path.stem if path.is_file() else path.name
        first = xs[0]
        if isinstance(first, str) or (isinstance(first, list) and isinstance(first[-1], str)):
            text = [x if isinstance(x, str) else str(x[-1]) for x in xs]
            features = np.array([encode_text(t, self.sequence_length) for t in text], np.float32)
            labels = np.array([str(y) for y in ys]) if isinstance(ys[0], str) else np.array(ys)
            return from_arrays(features, labels, name, groups=np.array(users))
        try:
            features = np.asarray(xs, dtype=np.float32)
        except ValueError:
            raise ConfigError(
                f"dataset {name!r}: LEAF samples must all have the same number of values."
            ) from None
        side = math.isqrt(features.shape[1]) if features.ndim == 2 else 0
        image = features.ndim == 2 and side * side == features.shape[1] and side > 1
        shape = (1, side, side) if image else None
        value_range = (0.0, 1.0) if image and features.min() >= 0 and features.max() <= 1 else None
        return from_arrays(features, np.asarray(ys), name, shape, value_range, np.array(users))
