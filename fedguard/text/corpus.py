"""The bundled public corpus: the English documentation text inside the standard library.

Every Python installation ships ``pydoc_data.topics.topics`` (the language reference's topics that
``help()`` prints: ≈ 465 k characters of English technical prose). It is read at run time — never
copied into the repository — and split by topic, deterministically, into three disjoint parts:

* ``pretrain`` (8 topics in 10): the public text the base model is pre-trained on;
* ``heldout`` (every 10th topic, from the first): held-out public text (bits per character);
* ``background`` (every 10th topic, from the second): filler of the clients' synthetic messages.

Public API
----------
``public_text(part: str) -> str``
    The concatenated topics of ``part`` (``"pretrain"``, ``"heldout"``, ``"background"``).
``corpus_digest() -> str``
    SHA-256 of the whole corpus (the base model's cache key includes it: another Python version
    ships another text).
"""

from __future__ import annotations

import hashlib
from functools import cache

from fedguard.errors import ConfigError

PARTS = ("pretrain", "heldout", "background")


@cache
def _topics() -> tuple[tuple[str, str], ...]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a stripped Python without pydoc_data
        raise ConfigError(
            "dataset source 'bundled' needs the standard library's pydoc_data, which this "
            "Python does not ship; give a text file with dataset.path instead."
        ) from None
    return tuple(sorted(topics.items()))


def _part_of(index: int) -> str:
    return {0: "heldout", 1: "background"}.get(index % 10, "pretrain")


@cache
def public_text(part: str) -> str:
    """The concatenated documentation topics of ``part``, separated by blank lines."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}; got {part!r}")
    return "\n\n".join(text.strip() for i, (_, text) in enumerate(_topics()) if _part_of(i) == part)


def corpus_digest() -> str:
    h = hashlib.sha256()
    for name, text in _topics():
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


__all__ = ["PARTS", "corpus_digest", "public_text"]
