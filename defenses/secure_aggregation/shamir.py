"""Vectorized Shamir t-of-n secret sharing over a prime field.

Two fields are supported: GF(2^31 - 1), whose elements and products fit numpy ``int64`` so that
every step is a vectorized integer operation, and GF(2^127 - 1) on numpy object arrays of Python
integers. A 32-byte secret (an X25519 private key, a self-mask seed) is cut into chunks of
``prime.bit_length() - 1`` bits (30 bits: 9 chunks; 126 bits: 3 chunks) and every chunk is shared
with its **own independent** random polynomial of degree ``t - 1``. Shamir's scheme is perfectly
secret for any prime larger than the number of share holders, so the small field loses nothing:
any ``t - 1`` shares of a chunk are uniformly distributed whatever the chunk.

Share holder ``i`` gets the evaluation at ``x_i`` (distinct, non-zero, below the prime; the
protocol uses ``client id + 1``). Polynomials are evaluated by Horner's rule over all holders and
chunks at once; reconstruction uses the Lagrange coefficients at zero, computed with products
reduced pairwise (a log-depth tree) and one batched Fermat inversion.

References
----------
.. [1] A. Shamir, "How to Share a Secret", Communications of the ACM 22(11), 1979.
.. [2] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017 (t-out-of-n sharing of the masking key and the self-mask seed).
"""

from __future__ import annotations

import math
import os

import numpy as np

MERSENNE_31 = (1 << 31) - 1
MERSENNE_127 = (1 << 127) - 1
SUPPORTED_PRIMES = (MERSENNE_31, MERSENNE_127)


def prime_for_bits(field_bits: int) -> int:
    """The Mersenne prime 2^field_bits - 1 (``field_bits`` in {31, 127})."""
    if field_bits == 31:
        return MERSENNE_31
    if field_bits == 127:
        return MERSENNE_127
    raise ValueError(f"shamir field_bits must be 31 or 127; got {field_bits}.")


def _check_prime(prime: int) -> None:
    if prime not in SUPPORTED_PRIMES:
        raise ValueError("prime must be 2^31 - 1 or 2^127 - 1.")


def _as_field(values: np.ndarray, prime: int) -> np.ndarray:
    if prime == MERSENNE_31:
        return np.asarray(values, dtype=np.int64)
    return np.asarray(values, dtype=object)


def chunk_bits(prime: int) -> int:
    """Bits of secret held by one field element (30 for 2^31 - 1, 126 for 2^127 - 1)."""
    _check_prime(prime)
    return prime.bit_length() - 1


def element_bytes(prime: int) -> int:
    """Bytes of one serialized field element (4 or 16)."""
    _check_prime(prime)
    return 4 if prime == MERSENNE_31 else 16


def chunks_per_secret(n_bytes: int, prime: int) -> int:
    return math.ceil(8 * n_bytes / chunk_bits(prime))


def random_field_elements(shape: tuple[int, ...], prime: int) -> np.ndarray:
    """Uniform field elements from the OS CSPRNG (rejection of the single value ``prime``)."""
    _check_prime(prime)
    count = int(np.prod(shape)) if shape else 1
    if prime == MERSENNE_31:
        out = np.frombuffer(os.urandom(4 * count), dtype="<u4").astype(np.int64) & MERSENNE_31
        bad = np.flatnonzero(out == MERSENNE_31)
        while bad.size:
            fresh = np.frombuffer(os.urandom(4 * bad.size), dtype="<u4").astype(np.int64)
            out[bad] = fresh & MERSENNE_31
            bad = bad[out[bad] == MERSENNE_31]
        return out.reshape(shape)
    raw = os.urandom(16 * count)
    vals: list[int] = []
    for i in range(count):
        v = int.from_bytes(raw[16 * i : 16 * i + 16], "little") & MERSENNE_127
        while v == MERSENNE_127:
            v = int.from_bytes(os.urandom(16), "little") & MERSENNE_127
        vals.append(v)
    arr = np.empty(count, dtype=object)
    arr[:] = vals
    return arr.reshape(shape)


def _check_points(xs: np.ndarray, prime: int) -> None:
    if xs.ndim != 1 or xs.size == 0:
        raise ValueError("share points must be a non-empty 1-D array.")
    ints = [int(v) for v in xs]
    if min(ints) <= 0 or max(ints) >= prime:
        raise ValueError("share points must lie in 1 .. prime - 1.")
    if len(set(ints)) != len(ints):
        raise ValueError("share points must be distinct.")


def split(secrets: np.ndarray, xs: np.ndarray, threshold: int, prime: int) -> np.ndarray:
    """Share each field element of ``secrets`` (m,) among holders at points ``xs`` (h,).

    Returns ``(h, m)`` shares; any ``threshold`` rows determine the secrets, fewer reveal nothing.
    """
    _check_prime(prime)
    xs_f = _as_field(xs, prime)
    _check_points(xs_f, prime)
    if not 1 <= threshold <= xs_f.size:
        raise ValueError(
            f"threshold must be between 1 and the number of share holders ({xs_f.size}); "
            f"got {threshold}."
        )
    sec = _as_field(secrets, prime)  # (m,)
    if sec.ndim != 1 or any(int(s) < 0 or int(s) >= prime for s in sec):
        raise ValueError("secrets must be a 1-D array of field elements in [0, prime).")
    coeffs = random_field_elements((threshold - 1, sec.size), prime)  # (t-1, m), c_1 .. c_{t-1}
    x_col = xs_f[:, None]  # (h, 1)
    acc = np.zeros((xs_f.size, sec.size), dtype=sec.dtype)  # (h, m)
    if threshold > 1:
        acc = acc + coeffs[-1][None, :]
        for j in range(threshold - 3, -1, -1):  # Horner: acc = acc * x + c_j
            acc = (acc * x_col + coeffs[j][None, :]) % prime
        acc = (acc * x_col + sec[None, :]) % prime
    else:
        acc = acc + sec[None, :]
    return acc


def _prod_rows_mod(mat: np.ndarray, prime: int) -> np.ndarray:
    """Row products mod ``prime`` of a ``(r, c)`` array, by pairwise (log-depth) reduction."""
    cur = mat
    while cur.shape[1] > 1:
        if cur.shape[1] % 2:
            one = np.ones((cur.shape[0], 1), dtype=cur.dtype)
            cur = np.concatenate([cur, one], axis=1)
        cur = (cur[:, 0::2] * cur[:, 1::2]) % prime
    return cur[:, 0]


def _inverse_mod(values: np.ndarray, prime: int) -> np.ndarray:
    """Elementwise inverse by Fermat's little theorem (``values`` non-zero)."""
    if prime != MERSENNE_31:
        out = np.empty(values.shape, dtype=object)
        out[...] = [pow(int(v), prime - 2, prime) for v in values.ravel()]
        return out
    result = np.ones_like(values)
    base = values % prime
    exponent = prime - 2
    while exponent:
        if exponent & 1:
            result = (result * base) % prime
        base = (base * base) % prime
        exponent >>= 1
    return result


def lagrange_at_zero(xs: np.ndarray, prime: int) -> np.ndarray:
    """Coefficients λ_i = Π_{j≠i} x_j / (x_j − x_i) mod p, so that f(0) = Σ λ_i f(x_i)."""
    _check_prime(prime)
    xs_f = _as_field(xs, prime)
    _check_points(xs_f, prime)
    t = xs_f.size
    diff = (xs_f[None, :] - xs_f[:, None]) % prime  # (t, t), diff[i, j] = x_j - x_i
    nums = np.broadcast_to(xs_f[None, :], (t, t)).copy()  # (t, t)
    diag = np.arange(t)
    diff[diag, diag] = 1
    nums[diag, diag] = 1
    num = _prod_rows_mod(nums, prime)  # (t,)
    den = _prod_rows_mod(diff, prime)  # (t,)
    return (num * _inverse_mod(den, prime)) % prime


def combine(shares: np.ndarray, xs: np.ndarray, prime: int) -> np.ndarray:
    """Reconstruct secrets from shares ``(t, m)`` or a batch ``(b, t, m)`` held at ``xs`` (t,).

    Exactly the given shares are interpolated: with fewer than the threshold the result is a
    uniformly random-looking field element, not the secret.
    """
    lam = lagrange_at_zero(xs, prime)  # (t,)
    sh = _as_field(shares, prime)
    if sh.shape[-2] != lam.size:
        raise ValueError("shares and share points disagree in length.")
    terms = (sh * lam[:, None]) % prime  # (..., t, m)
    return terms.sum(axis=-2) % prime


def combine_many(shares: np.ndarray, xs: np.ndarray, prime: int) -> np.ndarray:
    """Reconstruct ``b`` secrets at once, each from its own share points: shares ``(b, t, m)``
    held at ``xs`` ``(b, t)`` (SecAgg+: every owner has different holders). GF(2^31 − 1) only;
    the Lagrange coefficients of all b point sets are computed together."""
    if prime != MERSENNE_31:
        return np.stack([combine(shares[i], xs[i], prime) for i in range(len(xs))])
    xs_f = _as_field(xs, prime)  # (b, t)
    for row in xs_f:
        _check_points(row, prime)
    b, t = xs_f.shape
    diff = (xs_f[:, None, :] - xs_f[:, :, None]) % prime  # (b, t, t): x_j − x_i
    nums = np.broadcast_to(xs_f[:, None, :], (b, t, t)).copy()  # (b, t, t)
    diag = np.arange(t)
    diff[:, diag, diag] = 1
    nums[:, diag, diag] = 1
    num = _prod_rows_mod(nums.reshape(b * t, t), prime)  # (b·t,)
    den = _prod_rows_mod(diff.reshape(b * t, t), prime)  # (b·t,)
    lam = ((num * _inverse_mod(den, prime)) % prime).reshape(b, t)  # (b, t)
    sh = _as_field(shares, prime)
    if sh.shape[:2] != (b, t):
        raise ValueError("shares and share points disagree in length.")
    return ((sh * lam[:, :, None]) % prime).sum(axis=1) % prime  # (b, m)


def secret_to_field(secret: bytes, prime: int) -> np.ndarray:
    """Cut a byte string into field elements of ``chunk_bits(prime)`` bits (little endian)."""
    bits = chunk_bits(prime)
    value = int.from_bytes(secret, "little")
    m = chunks_per_secret(len(secret), prime)
    mask = (1 << bits) - 1
    return _as_field(
        np.array([(value >> (bits * i)) & mask for i in range(m)], dtype=object), prime
    )


def field_to_secret(elements: np.ndarray, n_bytes: int, prime: int) -> bytes:
    """Inverse of :func:`secret_to_field`; raises ``ValueError`` for an out-of-range chunk."""
    bits = chunk_bits(prime)
    value = 0
    for i, e in enumerate(elements):
        v = int(e)
        if not 0 <= v < (1 << bits):
            raise ValueError("reconstructed chunk out of range: the shares are inconsistent.")
        value |= v << (bits * i)
    if value >= 1 << (8 * n_bytes):
        raise ValueError("reconstructed secret out of range: the shares are inconsistent.")
    return value.to_bytes(n_bytes, "little")


def elements_to_bytes(elements: np.ndarray, prime: int) -> bytes:
    """Serialize field elements (any shape, flattened) to fixed-width little-endian bytes."""
    if prime == MERSENNE_31:
        return np.asarray(elements, dtype=np.int64).astype("<u4").tobytes()
    width = element_bytes(prime)
    return b"".join(int(e).to_bytes(width, "little") for e in np.asarray(elements).ravel())


def bytes_to_elements(data: bytes, prime: int) -> np.ndarray:
    """Inverse of :func:`elements_to_bytes` (1-D); raises ``ValueError`` on a non-element."""
    width = element_bytes(prime)
    if len(data) % width:
        raise ValueError("serialized field elements have a ragged length.")
    if prime == MERSENNE_31:
        out = np.frombuffer(data, dtype="<u4").astype(np.int64)
        if (out >= prime).any():
            raise ValueError("serialized value is not a field element.")
        return out
    vals = [int.from_bytes(data[i : i + width], "little") for i in range(0, len(data), width)]
    if any(v >= prime for v in vals):
        raise ValueError("serialized value is not a field element.")
    arr = np.empty(len(vals), dtype=object)
    arr[:] = vals
    return arr
