"""Byte-level tokenizer: the 256 byte values of UTF-8 plus three special tokens (no download).

Public API
----------
``PAD``, ``BOS``, ``EOS`` : int
    Special token ids 256, 257, 258 (after the 256 byte values).
``VOCAB_SIZE`` : int
    259; also ``ByteTokenizer().vocab_size``.
``ByteTokenizer().encode(text: str, *, bos=False, eos=False) -> list[int]``
    The UTF-8 bytes of ``text`` as ids 0–255 (optionally framed by BOS / EOS).
``ByteTokenizer().decode(ids: Sequence[int]) -> str``
    The text of the byte ids; special tokens are dropped, invalid UTF-8 becomes U+FFFD.
``encode(text) -> list[int]``, ``decode(ids) -> str``
    Module-level shortcuts of the same.

One token per byte means that bits per token of a model are exactly its bits per byte, and bits
per *character* are ``bits per token × tokens / characters`` (equal for ASCII text).

References
----------
Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019 (byte-level
input as the base of its BPE vocabulary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PAD = 256
BOS = 257
EOS = 258
VOCAB_SIZE = 259


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as token ids 0–255; ``PAD``, ``BOS``, ``EOS`` after them."""

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        data = bytes(int(i) for i in ids if 0 <= int(i) < 256)
        return data.decode("utf-8", errors="replace")


TOKENIZER = ByteTokenizer()


def encode(text: str) -> list[int]:
    """UTF-8 byte ids of ``text`` (:meth:`ByteTokenizer.encode`)."""
    return TOKENIZER.encode(text)


def decode(ids: Sequence[int]) -> str:
    """Text of byte ids (:meth:`ByteTokenizer.decode`)."""
    return TOKENIZER.decode(ids)


__all__ = ["BOS", "EOS", "PAD", "TOKENIZER", "VOCAB_SIZE", "ByteTokenizer", "decode", "encode"]
