"""Synthetic client messages: background text with planted secrets, as token windows.

Each of ``n_authors`` clients writes a contiguous slice of the background text (the public
corpus' ``background`` part, see :mod:`fedguard.text.corpus`), cut into windows, plus one window
per repetition of each of its secrets: the secret, then ". ", then background text from a random
place of its slice. A secret therefore always starts a window (it is never cut in two) and is
followed by varying context, as a message a user sends several times would be.

Public API
----------
``token_windows(ids, window) -> np.ndarray``
    Non-overlapping windows ``(N, window + 1)`` of a token sequence (the tail is dropped);
    a sample's input is ``w[:-1]`` and its target ``w[1:]``.
``secret_windows(secret, background, window, rng) -> np.ndarray``
    The ``secret.repetitions`` windows ``(r, window + 1)`` that carry ``secret``.
``author_windows(background, secrets, n_authors, chars_per_author, window, seed)``
    ``(windows (N, window + 1), authors (N,))`` of every author.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedguard.errors import ConfigError
from fedguard.rng import numpy_generator
from fedguard.text.secrets import Secret
from fedguard.text.tokenizer import encode


def token_windows(ids: Sequence[int] | np.ndarray, window: int) -> np.ndarray:
    """Non-overlapping windows of ``window + 1`` tokens, ``(N, window + 1)`` int64."""
    tokens = np.asarray(ids, dtype=np.int64)
    n = len(tokens) // (window + 1)
    return tokens[: n * (window + 1)].reshape(n, window + 1)


def secret_windows(
    secret: Secret, background: str, window: int, rng: np.random.Generator
) -> np.ndarray:
    """One window per repetition: the secret, ". ", then background from a random offset."""
    head = encode(secret.text + ". ")
    if len(head) > window + 1:
        raise ConfigError(
            f"dataset.window ({window}) is shorter than the planted secret {secret.format!r} "
            f"({len(head)} tokens with its separator); raise dataset.window."
        )
    filler = encode(background)
    need = window + 1 - len(head)
    if len(filler) < need:
        raise ConfigError("dataset.chars_per_author is too small to fill a window; raise it.")
    rows = []
    for _ in range(secret.repetitions):
        start = int(rng.integers(len(filler) - need + 1))
        rows.append(head + filler[start : start + need])
    return np.asarray(rows, dtype=np.int64).reshape(-1, window + 1)


def author_windows(
    background: str,
    secrets: Sequence[Secret],
    n_authors: int,
    chars_per_author: int,
    window: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every author's background windows and secret windows, with the author of each row."""
    if n_authors * chars_per_author > len(background):
        raise ConfigError(
            f"dataset.n_authors × dataset.chars_per_author ({n_authors} × {chars_per_author}) "
            f"exceeds the {len(background)} characters of background text; lower either."
        )
    rows, authors = [], []
    for author in range(n_authors):
        text = background[author * chars_per_author : (author + 1) * chars_per_author]
        own = token_windows(encode(text), window)
        rng = numpy_generator(seed, -1, author, "secret_windows")
        planted = [secret_windows(s, text, window, rng) for s in secrets if s.client == author]
        block = np.concatenate([own, *planted]) if planted else own
        rows.append(block)
        authors.append(np.full(len(block), author, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(authors)


__all__ = ["author_windows", "secret_windows", "token_windows"]
