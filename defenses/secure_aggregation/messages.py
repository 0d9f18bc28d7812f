"""Byte format of every protocol message (all parties exchange only these bytes).

Header (20 bytes, big endian): magic ``b"SA"``, version, stage, round (u64), sender (u32),
receiver (u32); the server's id is ``SERVER = 0xFFFFFFFF``. Payloads per stage (Bonawitz et al.
2017, Fig. 4; the consistency round is their active-adversary variant):

=========== ======================== ====================================================
stage       direction                payload
=========== ======================== ====================================================
ADVERTISE   client → server          c_pk (32) ‖ s_pk (32) ‖ signature (64, or absent)
KEYS        server → client          count ‖ [id ‖ c_pk ‖ s_pk ‖ sig_len (1) ‖ sig] …
SHARES      client → server          count ‖ [receiver ‖ length (u16) ‖ AEAD ciphertext] …
FORWARD     server → client          count ‖ [sender ‖ length (u16) ‖ AEAD ciphertext] …
MASKED      client → server          word bytes (1) ‖ d (u64) ‖ 3 zero bytes ‖ d
                                     little-endian words (at byte 32 of the message:
                                     aligned, so the server sums them in place)
SURVIVORS   server → client          count ‖ ids …
CONSISTENCY client → server          Ed25519 signature of (round, survivors) (64)
SIGNATURES  server → client          count ‖ [id ‖ signature (64)] …
UNMASK      client → server          count ‖ [owner ‖ kind (0 = key share, 1 = seed share)
                                     ‖ field elements] …
=========== ======================== ====================================================

Active-adversary variant (``active_adversary=True``): every client → server message ends with an
Ed25519 signature (64 bytes) over the session, the header (stage, round, sender, receiver) and
the SHA-256 of the whole message; KEYS is followed by the cohort U1 (``ids``); SHARES by the
commitments (seed commitment (32) ‖ count ‖ [holder ‖ key-share commitment (32) ‖ seed-share
commitment (32)] …), and each share plaintext carries a 16-byte salt; MASKED is followed by the
ids the client masked with; every UNMASK entry carries its share's salt (16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from defenses.secure_aggregation import shamir
from defenses.secure_aggregation.errors import ProtocolViolation

MAGIC = b"SA"
VERSION = 1
SERVER = 0xFFFFFFFF
_HEADER = struct.Struct(">2sBBQII")
_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in (">B", ">H", ">I", ">Q"))
HEADER_BYTES = _HEADER.size
KEY_BYTES = 32
SIG_BYTES = 64
DIGEST_BYTES = 32  # SHA-256: commitments, and the broadcast model's digest (model_commitment)
#: with model_commitment, the advertised signature is followed by the digest and its signature
MODEL_BLOCK_BYTES = DIGEST_BYTES + SIG_BYTES
SALT_BYTES = 16


class Stage(IntEnum):
    ADVERTISE = 1
    KEYS = 2
    SHARES = 3
    FORWARD = 4
    MASKED = 5
    SURVIVORS = 6
    CONSISTENCY = 7
    SIGNATURES = 8
    UNMASK = 9


class ShareKind(IntEnum):
    KEY = 0  # share of the masking private key s_u^SK (owner dropped)
    SEED = 1  # share of the self-mask seed b_u (owner survived)


@dataclass(frozen=True)
class Header:
    stage: Stage
    round_index: int
    sender: int
    receiver: int


def pack(stage: Stage, round_index: int, sender: int, receiver: int, payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, int(stage), round_index, sender, receiver) + payload


def peek(message: bytes) -> Header:
    """Parse only the header (routing); raises :class:`ProtocolViolation` if malformed."""
    if len(message) < HEADER_BYTES:
        raise ProtocolViolation("a message is shorter than the protocol header.")
    magic, version, stage, rnd, sender, receiver = _HEADER.unpack_from(message)
    if magic != MAGIC or version != VERSION:
        raise ProtocolViolation("a message has a foreign magic number or protocol version.")
    try:
        st = Stage(stage)
    except ValueError as exc:
        raise ProtocolViolation(f"a message names unknown protocol stage {stage}.") from exc
    return Header(st, rnd, sender, receiver)


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise ProtocolViolation(f"a {self.what} message is truncated.")

    def take(self, n: int) -> bytes:
        self._need(n)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, fmt: struct.Struct) -> int:
        self._need(fmt.size)
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return int(value)

    def u8(self) -> int:
        return self._unpack(_U8)

    def u16(self) -> int:
        return self._unpack(_U16)

    def u32(self) -> int:
        return self._unpack(_U32)

    def u64(self) -> int:
        return self._unpack(_U64)

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolViolation(f"a {self.what} message has trailing bytes.")


def payload(message: bytes) -> bytes:
    return message[HEADER_BYTES:]


# ---- ADVERTISE -------------------------------------------------------------------------------


def advertise_payload(c_pk: bytes, s_pk: bytes, signature: bytes) -> bytes:
    return c_pk + s_pk + signature


def read_advertise(data: bytes) -> tuple[bytes, bytes, bytes]:
    r = _Reader(data, "ADVERTISE")
    c_pk, s_pk = r.take(KEY_BYTES), r.take(KEY_BYTES)
    sig = r.take(len(data) - 2 * KEY_BYTES) if len(data) > 2 * KEY_BYTES else b""
    if sig and len(sig) not in (SIG_BYTES, SIG_BYTES + MODEL_BLOCK_BYTES):
        raise ProtocolViolation("an ADVERTISE message carries a malformed signature.")
    r.done()
    return c_pk, s_pk, sig


# ---- KEYS ------------------------------------------------------------------------------------


def keys_payload(entries: list[tuple[int, bytes, bytes, bytes]]) -> bytes:
    parts = [struct.pack(">I", len(entries))]
    for cid, c_pk, s_pk, sig in entries:
        parts.append(struct.pack(">I", cid) + c_pk + s_pk + bytes([len(sig)]) + sig)
    return b"".join(parts)


def read_keys(data: bytes, with_cohort: bool = False) -> list[tuple[int, bytes, bytes, bytes]]:
    return read_keys_and_cohort(data, with_cohort)[0]


def read_keys_and_cohort(
    data: bytes, with_cohort: bool
) -> tuple[list[tuple[int, bytes, bytes, bytes]], list[int]]:
    """Key entries and, in the active variant, the cohort U1 that follows them."""
    r = _Reader(data, "KEYS")
    out = []
    for _ in range(r.u32()):
        cid = r.u32()
        c_pk, s_pk = r.take(KEY_BYTES), r.take(KEY_BYTES)
        sig = r.take(r.u8())
        out.append((cid, c_pk, s_pk, sig))
    cohort: list[int] = []
    if with_cohort:
        n = r.u32()
        cohort = [int(v) for v in np.frombuffer(r.take(4 * n), dtype=">u4")]
    r.done()
    return out, cohort


# ---- SHARES / FORWARD (same layout: peer id ‖ ciphertext) ------------------------------------


def ciphertexts_payload(entries: list[tuple[int, bytes]]) -> bytes:
    parts = [struct.pack(">I", len(entries))]
    for peer, ct in entries:
        parts.append(struct.pack(">IH", peer, len(ct)) + ct)
    return b"".join(parts)


def read_ciphertexts(data: bytes, what: str) -> list[tuple[int, bytes]]:
    r = _Reader(data, what)
    out = []
    for _ in range(r.u32()):
        peer = r.u32()
        out.append((peer, r.take(r.u16())))
    r.done()
    return out


# ---- MASKED ----------------------------------------------------------------------------------


_MASKED_PREFIX = struct.Struct(">BQ3x")  # 12 bytes: the words start at byte 32 of the message


def masked_payload(words: np.ndarray) -> bytes:
    dt = words.dtype.newbyteorder("<")
    return _MASKED_PREFIX.pack(words.dtype.itemsize, words.size) + words.astype(dt).tobytes()


def masked_bytes(dim: int, dtype: np.dtype) -> int:
    """Length of the masked-vector block of a MASKED payload."""
    return _MASKED_PREFIX.size + dim * dtype.itemsize


def check_masked(data: bytes | memoryview, dim: int, dtype: np.dtype) -> None:
    """Raise unless ``data`` is exactly one masked vector of ``dim`` words of ``dtype``."""
    if len(data) < _MASKED_PREFIX.size:
        raise ProtocolViolation("a MASKED message is truncated.")
    width, d = _MASKED_PREFIX.unpack_from(data)
    if bytes(data[9 : _MASKED_PREFIX.size]) != bytes(3):
        raise ProtocolViolation("a MASKED message has non-zero padding.")
    if width != dtype.itemsize or d != dim or len(data) != masked_bytes(dim, dtype):
        raise ProtocolViolation(
            f"a masked input has {d} words of {width} bytes; expected {dim} of {dtype.itemsize}."
        )


def read_masked(data: bytes | memoryview, dim: int, dtype: np.dtype) -> np.ndarray:
    """The masked vector as a read-only view of ``data`` (no copy) in little-endian words."""
    check_masked(data, dim, dtype)
    return np.frombuffer(data, dtype=dtype.newbyteorder("<"), offset=_MASKED_PREFIX.size)


# ---- SURVIVORS -------------------------------------------------------------------------------


def ids_payload(ids: list[int]) -> bytes:
    return struct.pack(">I", len(ids)) + np.asarray(ids, dtype=">u4").tobytes()


def read_ids(data: bytes, what: str = "SURVIVORS") -> list[int]:
    r = _Reader(data, what)
    n = r.u32()
    raw = r.take(4 * n)
    r.done()
    return [int(v) for v in np.frombuffer(raw, dtype=">u4")]


# ---- SIGNATURES ------------------------------------------------------------------------------


def signatures_payload(entries: list[tuple[int, bytes]]) -> bytes:
    return struct.pack(">I", len(entries)) + b"".join(struct.pack(">I", i) + s for i, s in entries)


def read_signatures(data: bytes) -> list[tuple[int, bytes]]:
    r = _Reader(data, "SIGNATURES")
    out = []
    for _ in range(r.u32()):
        cid = r.u32()
        out.append((cid, r.take(SIG_BYTES)))
    r.done()
    return out


# ---- UNMASK ----------------------------------------------------------------------------------


def unmask_payload(entries: list[tuple[int, ShareKind, bytes]]) -> bytes:
    parts = [struct.pack(">I", len(entries))]
    for owner, kind, elems in entries:
        parts.append(struct.pack(">IB", owner, int(kind)) + elems)
    return b"".join(parts)


def read_unmask(data: bytes, share_bytes: int) -> list[tuple[int, ShareKind, bytes]]:
    r = _Reader(data, "UNMASK")
    out = []
    for _ in range(r.u32()):
        owner, kind = r.u32(), r.u8()
        if kind not in (0, 1):
            raise ProtocolViolation("an UNMASK message names an unknown share kind.")
        out.append((owner, ShareKind(kind), r.take(share_bytes)))
    r.done()
    return out


def read_unmask_arrays(
    data: bytes, chunks: int, prime: int, salt_bytes: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized :func:`read_unmask`: owners ``(k,)``, kinds ``(k,)``, shares ``(k, chunks)``
    and salts ``(k, salt_bytes)`` uint8 (the active variant's share openings; else width 0)."""
    width = shamir.element_bytes(prime)
    rec_dtype = np.dtype(
        [
            ("owner", ">u4"),
            ("kind", "u1"),
            ("share", f"V{chunks * width}"),
            ("salt", "u1", (salt_bytes,)),
        ]
    )
    r = _Reader(data[:4], "UNMASK")
    count = r.u32()
    if len(data) != 4 + count * rec_dtype.itemsize:
        raise ProtocolViolation("an UNMASK message is truncated or has trailing bytes.")
    rec = np.frombuffer(data, dtype=rec_dtype, count=count, offset=4)
    kinds = rec["kind"].astype(np.int64)
    if ((kinds != 0) & (kinds != 1)).any():
        raise ProtocolViolation("an UNMASK message names an unknown share kind.")
    try:
        elems = shamir.bytes_to_elements(rec["share"].tobytes(), prime).reshape(count, chunks)
    except ValueError as exc:
        raise ProtocolViolation("an UNMASK message carries a malformed share.") from exc
    salts = np.asarray(rec["salt"], dtype=np.uint8).reshape(count, salt_bytes)
    return rec["owner"].astype(np.int64), kinds, elems, salts


def ciphertext_dtype(ct_bytes: int) -> np.dtype:
    """Wire layout of one SHARES / FORWARD entry with a ciphertext of ``ct_bytes``."""
    return np.dtype([("peer", ">u4"), ("length", ">u2"), ("ct", f"V{ct_bytes}")])


def read_ciphertext_records(data: bytes, ct_bytes: int, what: str) -> np.ndarray:
    """Vectorized :func:`read_ciphertexts` for fixed-size ciphertexts: a structured array."""
    dt = ciphertext_dtype(ct_bytes)
    count = _Reader(data[:4], what).u32()
    if len(data) != 4 + count * dt.itemsize:
        raise ProtocolViolation(f"a {what} message has entries of the wrong size.")
    rec = np.frombuffer(data, dtype=dt, count=count, offset=4)
    if (rec["length"] != ct_bytes).any():
        raise ProtocolViolation(f"a {what} message carries a ciphertext of the wrong length.")
    return rec


def ciphertext_records_payload(rec: np.ndarray) -> bytes:
    return struct.pack(">I", rec.size) + rec.tobytes()


# ---- SHARES commitments (active variant) ------------------------------------------------------


def commitments_payload(seed_commitment: bytes, entries: list[tuple[int, bytes, bytes]]) -> bytes:
    parts = [seed_commitment, struct.pack(">I", len(entries))]
    parts.extend(struct.pack(">I", h) + ck + cs for h, ck, cs in entries)
    return b"".join(parts)


_COMMITMENT = np.dtype(
    [("holder", ">u4"), ("key", f"V{DIGEST_BYTES}"), ("seed", f"V{DIGEST_BYTES}")]
)


def read_commitments(data: bytes) -> tuple[bytes, np.ndarray]:
    """Seed commitment and the per-holder records (``holder``, ``key``, ``seed`` commitments),
    parsed as one structured array; a holder named twice is a violation."""
    if len(data) < DIGEST_BYTES + 4:
        raise ProtocolViolation("a SHARES message is truncated.")
    seed = bytes(data[:DIGEST_BYTES])
    (count,) = _U32.unpack_from(data, DIGEST_BYTES)
    if len(data) != DIGEST_BYTES + 4 + count * _COMMITMENT.itemsize:
        raise ProtocolViolation("a SHARES message is truncated or has trailing bytes.")
    rec = np.frombuffer(data, dtype=_COMMITMENT, count=count, offset=DIGEST_BYTES + 4)
    if np.unique(rec["holder"]).size != count:
        raise ProtocolViolation("a SHARES message commits to one holder's shares twice.")
    return seed, rec


def split_ciphertext_block(data: bytes | memoryview, ct_bytes: int, what: str) -> int:
    """Length of the leading ciphertext block of a SHARES payload (the commitments follow)."""
    count = _Reader(bytes(data[:4]), what).u32()
    return 4 + count * ciphertext_dtype(ct_bytes).itemsize
