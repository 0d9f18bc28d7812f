"""Mask expansion: a 32-byte key → a vector of uniform words, by a stream-cipher keystream.

The keystream of ChaCha20 (RFC 8439, 32-byte key, zero nonce and counter) or AES-256 in counter
mode under a key used for nothing else is a cryptographic PRG; its bytes are read as little-endian
``uint32`` / ``uint64`` words. The modulus R of the masks is a power of two dividing 2^32 or 2^64,
so ``word mod R`` is exactly uniform in Z_R. Every key is fresh per round and pair (derived by
HKDF from an ephemeral X25519 agreement, or a fresh random self-mask seed), so the fixed nonce is
never reused under one key. ``numpy.random`` is never used for masks.

References
----------
.. [1] Y. Nir, A. Langley, "ChaCha20 and Poly1305 for IETF Protocols", RFC 8439, 2018.
.. [2] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017 (masks PRG(b_u) and PRG(s_uv)).
"""

from __future__ import annotations

import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PRG_ALGORITHMS = ("chacha20", "aes_ctr")
_NONCE = bytes(16)
_ZEROS = bytearray(0)
_SCRATCH = threading.local()  # reused output buffer: no page faults on every expansion


def _zeros(n_bytes: int) -> memoryview:
    global _ZEROS
    if len(_ZEROS) < n_bytes:
        _ZEROS = bytearray(max(n_bytes, 2 * len(_ZEROS)))
    return memoryview(_ZEROS)[:n_bytes]


def _cipher(key: bytes, algorithm: str) -> Cipher:  # type: ignore[type-arg]
    if len(key) != 32:
        raise ValueError("PRG keys must be 32 bytes.")
    if algorithm == "chacha20":
        return Cipher(algorithms.ChaCha20(key, _NONCE), mode=None)
    if algorithm == "aes_ctr":
        return Cipher(algorithms.AES(key), modes.CTR(_NONCE))
    raise ValueError(f"prg must be one of {', '.join(PRG_ALGORITHMS)}; got {algorithm!r}.")


def keystream_bytes(key: bytes, n_bytes: int, algorithm: str = "chacha20") -> np.ndarray:
    """``n_bytes`` keystream bytes as a ``uint8`` array (written in place, no copies)."""
    out = np.empty(n_bytes + 64, dtype=np.uint8)  # update_into wants slack of one block
    encryptor = _cipher(key, algorithm).encryptor()
    written = encryptor.update_into(_zeros(n_bytes), out.data)
    if written != n_bytes:
        raise RuntimeError("keystream generator returned a short block.")
    return out[:n_bytes]


def expand(key: bytes, n_words: int, dtype: np.dtype, algorithm: str = "chacha20") -> np.ndarray:
    """``(n_words,)`` uniform words of ``dtype`` (``uint32`` or ``uint64``) from ``key``."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint32), np.dtype(np.uint64)):
        raise ValueError("PRG words must be uint32 or uint64.")
    raw = keystream_bytes(key, n_words * dt.itemsize, algorithm)
    return raw.view(dt.newbyteorder("<")).astype(dt, copy=False)


def _scratch(n_bytes: int) -> np.ndarray:
    buf: np.ndarray | None = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < n_bytes + 64:
        buf = np.empty(n_bytes + 64, dtype=np.uint8)
        _SCRATCH.buf = buf
    return buf


def accumulate(acc: np.ndarray, key: bytes, sign: int, algorithm: str = "chacha20") -> None:
    """``acc ± PRG(key)`` in place (``acc`` uint32/uint64, wrapping mod 2^32 / 2^64).

    Same words as :func:`expand`, written into a reused per-thread buffer.
    """
    dt = acc.dtype
    if dt not in (np.dtype(np.uint32), np.dtype(np.uint64)) or acc.ndim != 1:
        raise ValueError("the accumulator must be a 1-D uint32 or uint64 array.")
    n_bytes = acc.size * dt.itemsize
    buf = _scratch(n_bytes)
    written = _cipher(key, algorithm).encryptor().update_into(_zeros(n_bytes), buf.data)
    if written != n_bytes:
        raise RuntimeError("keystream generator returned a short block.")
    words = buf[:n_bytes].view(dt.newbyteorder("<"))
    if sign >= 0:
        np.add(acc, words, out=acc, casting="unsafe")
    else:
        np.subtract(acc, words, out=acc, casting="unsafe")
