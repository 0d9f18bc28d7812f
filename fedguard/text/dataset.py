"""Text datasets as fixed-length token windows (registered as dataset ``text``).

A sample is a window of ``window + 1`` byte tokens: its input ``x = w[:-1]`` and its targets
``y = w[1:]`` (next-token prediction; ``labels`` are ``(N, window)``). Sources:

* ``path: ""`` (the default, offline): the bundled public corpus' background text
  (:mod:`fedguard.text.corpus`) written by ``n_authors`` synthetic clients, with planted
  secrets (:mod:`fedguard.text.secrets`, :mod:`fedguard.text.messages`); each author is a
  natural client;
* a ``.txt`` file or a folder of them: plain text, no natural clients;
* a ``.parquet`` file: one message per row in ``text_column``; ``client_column`` (optional)
  names each row's client (``partition: natural`` needs it);
* a LEAF Shakespeare folder or ``.json`` file: one natural client per speaker, whose text is
  rebuilt from LEAF's sliding 80-character samples (:mod:`fedguard.data.leaf`).

Public API
----------
``TextDataset(...)`` : dataset spec; ``.load() -> Dataset`` (features ``(N, window)`` float32
token ids, labels ``(N, window)`` int64, ``n_classes = VOCAB_SIZE``, ``groups`` the natural
client of every window or None), ``.formats() -> tuple[SecretFormat, ...]`` (public: the formats
and their candidate spaces), ``.planted_secrets() -> tuple[Secret, ...]`` (ground truth: only for
``Truth`` / metrics; ``Secret.client`` is the author, i.e. the natural group id).
``leaf_speaker_text(xs, ys) -> str``
    A LEAF Shakespeare speaker's text from its (x, y) samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedguard.api import require
from fedguard.data.dataset import Dataset, _group_ids
from fedguard.data.datasets import DatasetSource
from fedguard.errors import ConfigError
from fedguard.text.corpus import public_text
from fedguard.text.messages import author_windows, token_windows
from fedguard.text.secrets import (
    DEFAULT_FORMATS,
    Secret,
    SecretFormat,
    parse_formats,
    plant_secrets,
)
from fedguard.text.tokenizer import VOCAB_SIZE, encode

_DEFAULT_TEMPLATES = {f.name: f.template for f in DEFAULT_FORMATS}


@dataclass(frozen=True)
class TextDataset(DatasetSource):
    """Token windows of text (see the module docstring for the sources)."""

    path: str = ""
    window: int = 64
    text_column: str = "text"
    client_column: str = ""
    n_authors: int = 10
    chars_per_author: int = 4000
    secret_formats: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_TEMPLATES))
    secrets_per_author: int = 2
    repetitions: tuple[int, ...] = (1, 8)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "repetitions", tuple(self.repetitions))
        require(self.window >= 2, "dataset.window", "an integer ≥ 2")
        require(self.n_authors >= 1, "dataset.n_authors", "an integer ≥ 1")
        require(self.chars_per_author >= 1, "dataset.chars_per_author", "an integer ≥ 1")
        require(self.secrets_per_author >= 0, "dataset.secrets_per_author", "an integer ≥ 0")
        require(
            len(self.repetitions) > 0 and all(r >= 1 for r in self.repetitions),
            "dataset.repetitions",
            "a non-empty list of integers ≥ 1",
        )
        self.formats()  # a format without candidates fails here, before anything runs

    def formats(self) -> tuple[SecretFormat, ...]:
        """The secret formats (public knowledge: an attacker may enumerate their candidates)."""
        return parse_formats(self.secret_formats)

    def planted_secrets(self) -> tuple[Secret, ...]:
        """The planted secrets (ground truth); none for data read from a path."""
        if self.path:
            return ()
        return plant_secrets(
            self.formats(), self.n_authors, self.secrets_per_author, self.repetitions, self.seed
        )

    def load(self) -> Dataset:
        if not self.path:
            rows, groups = author_windows(
                public_text("background"),
                self.planted_secrets(),
                self.n_authors,
                self.chars_per_author,
                self.window,
                self.seed,
            )
            data = _windows_dataset(rows, groups, "bundled_messages")
            return replace(data, secret_formats=self.formats(), secrets=self.planted_secrets())
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ConfigError(f"dataset.path {self.path!r} does not exist.")
        if path.suffix == ".parquet":
            texts, clients = self._parquet(path)
        elif path.suffix == ".json" or (path.is_dir() and any(path.rglob("*.json"))):
            texts, clients = _leaf(path)
        else:
            texts, clients = [_plain_text(path)], None
        return _texts_dataset(texts, clients, self.window, path.stem or path.name)

    def _parquet(self, path: Path) -> tuple[list[str], list[Any] | None]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(
                f"dataset.path {self.path!r} is not a readable Parquet file ({exc})."
            ) from None
        for name, column in (
            ("text_column", self.text_column),
            ("client_column", self.client_column),
        ):
            if column and column not in table.column_names:
                raise ConfigError(
                    f"dataset.{name} {column!r} is not a column of {self.path}; columns: "
                    f"{', '.join(table.column_names)}."
                )
        texts = [
            str(t) if t is not None else "" for t in table.column(self.text_column).to_pylist()
        ]
        clients = table.column(self.client_column).to_pylist() if self.client_column else None
        return texts, clients


def _plain_text(path: Path) -> str:
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"dataset.path {str(path)!r} holds no .txt files.")
    try:
        return "\n".join(f.read_text(encoding="utf-8") for f in files)
    except UnicodeDecodeError:
        raise ConfigError(
            f"dataset.path {str(path)!r} holds a file that is not UTF-8 text."
        ) from None


def leaf_speaker_text(xs: list[Any], ys: list[Any]) -> str:
    """A speaker's text from LEAF Shakespeare samples (x: 80 characters, y: the next one).

    Consecutive samples slide by one character (``x_{i+1} = x_i[1:] + y_i``); where they do
    not, the next sample starts a new line."""
    parts: list[str] = []
    previous = None
    for x, y in zip(xs, ys, strict=True):
        x = x if isinstance(x, str) else str(x[-1])
        if previous is None or x != previous:
            parts.append(("\n" if parts else "") + x)
        parts.append(str(y))
        previous = x[1:] + str(y)
    return "".join(parts)


def _leaf(path: Path) -> tuple[list[str], list[Any]]:
    from fedguard.data.leaf import read_leaf_files

    texts, clients = [], []
    for user, xs, ys in read_leaf_files(path):
        if xs and not isinstance(xs[0], str | list):
            raise ConfigError(f"dataset.path {str(path)!r} is a LEAF dataset without text samples.")
        texts.append(leaf_speaker_text(xs, ys))
        clients.append(user)
    return texts, clients


def _texts_dataset(texts: list[str], clients: list[Any] | None, window: int, name: str) -> Dataset:
    """Each client's texts joined by newlines and cut into windows (no window spans clients)."""
    if clients is None:
        rows = token_windows(encode("\n".join(texts)), window)
        return _windows_dataset(rows, None, name)
    if any(c is None for c in clients):
        raise ConfigError(f"dataset {name!r} has missing client ids.")
    by_client: dict[Any, list[str]] = {}
    for text, client in zip(texts, clients, strict=True):
        by_client.setdefault(client, []).append(text)
    blocks, groups = [], []
    for client, own in by_client.items():
        rows = token_windows(encode("\n".join(own)), window)
        blocks.append(rows)
        groups += [str(client)] * len(rows)
    return _windows_dataset(np.concatenate(blocks), np.asarray(groups), name)


def _windows_dataset(rows: np.ndarray, groups: np.ndarray | None, name: str) -> Dataset:
    if len(rows) < 2:
        raise ConfigError(
            f"dataset {name!r} holds fewer than 2 windows of dataset.window tokens; give more "
            "text or lower dataset.window."
        )
    tokens = torch.as_tensor(rows, dtype=torch.long)
    return Dataset(
        tokens[:, :-1].to(torch.float32),  # (N, window) ids: exact in float32 (< 2^24)
        tokens[:, 1:].contiguous(),  # (N, window) next tokens
        VOCAB_SIZE,
        (rows.shape[1] - 1,),
        name,
        groups=_group_ids(groups, len(rows), name) if groups is not None else None,
    )


__all__ = ["TextDataset", "leaf_speaker_text"]
