"""Mask PRG: ChaCha20 / AES-CTR keystreams against published vectors and AES-ECB; uniformity."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy import stats

from fedguard.defenses.secure_aggregation import prg

# RFC 8439 (RFC 7539) Appendix A.1, test vector #1: all-zero key, nonce and block counter 0.
CHACHA20_ZERO_BLOCK = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)


def test_chacha20_keystream_matches_rfc8439_vector() -> None:
    assert prg.keystream_bytes(bytes(32), 64, "chacha20").tobytes() == CHACHA20_ZERO_BLOCK
    words = prg.expand(bytes(32), 16, np.dtype(np.uint32), "chacha20")
    assert np.array_equal(words, np.frombuffer(CHACHA20_ZERO_BLOCK, dtype="<u4"))


def test_aes_ctr_keystream_is_aes_of_the_counter_blocks() -> None:
    key = bytes(range(32))
    counters = b"".join(i.to_bytes(16, "big") for i in range(4))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    expected = ecb.update(counters) + ecb.finalize()
    assert prg.keystream_bytes(key, 64, "aes_ctr").tobytes() == expected


@pytest.mark.parametrize("algorithm", prg.PRG_ALGORITHMS)
def test_words_are_uniform_and_key_dependent(algorithm: str) -> None:
    a = prg.expand(b"a" * 32, 50_000, np.dtype(np.uint64), algorithm)
    b = prg.expand(b"b" * 32, 50_000, np.dtype(np.uint64), algorithm)
    assert np.array_equal(a, prg.expand(b"a" * 32, 50_000, np.dtype(np.uint64), algorithm))
    assert not np.array_equal(a, b)
    counts = np.bincount((a & np.uint64(255)).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4
    top = np.bincount((a >> np.uint64(56)).astype(np.int64), minlength=256)
    assert stats.chisquare(top).pvalue > 1e-4


def test_prg_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        prg.expand(b"short", 4, np.dtype(np.uint32))
    with pytest.raises(ValueError, match="prg must be"):
        prg.expand(bytes(32), 4, np.dtype(np.uint32), "mt19937")
    with pytest.raises(ValueError, match="uint32 or uint64"):
        prg.expand(bytes(32), 4, np.dtype(np.int64))


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_accumulate_adds_and_subtracts_the_expanded_words(dtype: type) -> None:
    acc = np.arange(1000, dtype=dtype)
    start = acc.copy()
    words = prg.expand(b"k" * 32, 1000, np.dtype(dtype), "chacha20")
    prg.accumulate(acc, b"k" * 32, +1, "chacha20")
    assert np.array_equal(acc, start + words)  # wraps mod 2^32 / 2^64
    prg.accumulate(acc, b"k" * 32, -1, "chacha20")
    assert np.array_equal(acc, start)
    with pytest.raises(ValueError, match="accumulator"):
        prg.accumulate(np.zeros(3, dtype=np.int64), b"k" * 32, 1)
