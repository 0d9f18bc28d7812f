"""The parties of secure aggregation and an in-process simulation exchanging real messages.

Bonawitz et al. (2017), Fig. 4 (semi-honest protocol; with ``consistency_check`` the round 3
"ConsistencyCheck" and the signed key advertisement of the active-adversary variant), run on a
communication graph: the complete graph (Bonawitz) or a random k-regular graph (SecAgg+, Bell
et al. 2020), where each client only agrees keys with, shares its secrets among and masks
against its neighbours, and the threshold t applies to each closed neighbourhood.

Round structure (``U1 ⊇ U2 ⊇ U3 ⊇ U4 ⊇ U5``: the clients that completed each step):

0. AdvertiseKeys: client u sends two X25519 public keys c_u^PK (encryption), s_u^PK (masking).
1. ShareKeys: u draws a self-mask seed b_u, Shamir-shares s_u^SK and b_u t-of-|N[u] ∩ U1| among
   its closed neighbourhood N[u] and sends each share AEAD-encrypted under
   HKDF(X25519(c_u^SK, c_v^PK)), associated data (round, u, v).
2. MaskedInputCollection: with s_uv = HKDF(X25519(s_u^SK, s_v^PK)),
   ``y_u = x_u + PRG(b_u) + Σ_{v ∈ N(u) ∩ U2} Δ_uv · PRG(s_uv)  (mod R)``, Δ_uv = +1 if u > v
   else −1 (the paper's sign convention; ALGORITHMS.md writes the opposite, which is equivalent).
3. ConsistencyCheck (optional): every u ∈ U3 signs (round, U3) with Ed25519; the server forwards
   the signatures and clients refuse to unmask without t valid ones.
4. Unmasking: every v ∈ U5 sends, for each owner w whose shares it holds, the share of b_w if
   w ∈ U3 (survived) or of s_w^SK if w ∈ U2 \\ U3 (dropped) — never both for one owner (asserted
   by clients and server). The server reconstructs, removes PRG(b_w) of survivors and the
   pairwise masks between dropped and surviving clients, and obtains Σ_{u ∈ U3} x_u mod R.

Every step aborts with :class:`ProtocolAbort` when fewer than t parties (of a neighbourhood)
remain, and with :class:`ProtocolViolation` on a message that fails authentication, arrives
twice, belongs to another round or stage, or comes from an unknown party.

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017.
.. [2] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
   Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
"""

from __future__ import annotations

import os
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from defenses.secure_aggregation import crypto, prg, shamir
from defenses.secure_aggregation.errors import ProtocolAbort, ProtocolViolation, SecAggError
from defenses.secure_aggregation.graph import Graph
from defenses.secure_aggregation.messages import (
    SERVER,
    ShareKind,
    Stage,
    advertise_payload,
    ciphertext_dtype,
    ciphertext_records_payload,
    ciphertexts_payload,
    ids_payload,
    keys_payload,
    masked_payload,
    pack,
    payload,
    peek,
    read_advertise,
    read_ciphertext_records,
    read_ciphertexts,
    read_ids,
    read_keys,
    read_masked,
    read_signatures,
    read_unmask_arrays,
    signatures_payload,
    unmask_payload,
)
from fedguard.errors import ConfigError

SECRET_BYTES = 32
_MASK_LABEL = b"pairwise-mask"
_SHARE_LABEL = b"share-encryption"


class DropPoint(IntEnum):
    """Where a simulated client drops out (it sends nothing from that step on)."""

    NEVER = 0
    BEFORE_SHARES = 1  # advertised keys only: not in U2, nobody masks with it
    BEFORE_MASKED = 2  # shared keys but sent no input: its pairwise keys are reconstructed
    BEFORE_UNMASK = 3  # input counted, but it does not help unmasking (nor sign)


@dataclass(frozen=True, eq=False)
class ProtocolConfig:
    """Public parameters of one aggregation round, known to every party."""

    round_index: int
    dim: int  # d, coordinates per input
    bits: int  # R = 2^bits
    threshold: int  # t, per closed neighbourhood
    graph: Graph  # open neighbourhoods; the keys are the round's client ids
    prg: str = "chacha20"
    aead: str = "aes_gcm"
    field_bits: int = 31
    consistency_check: bool = False
    allow_unsafe_threshold: bool = False

    def __post_init__(self) -> None:
        if not self.graph:
            raise ConfigError("secure aggregation needs at least one client.")
        if any(not 0 <= u < shamir.MERSENNE_31 - 1 for u in self.graph):
            raise ConfigError("client ids must lie in 0 .. 2^31 - 3 (share points are id + 1).")
        smallest = min(len(nb) + 1 for nb in self.graph.values())
        if not 1 <= self.threshold <= smallest:
            raise ConfigError(
                f"threshold must be between 1 and the smallest neighbourhood size ({smallest} "
                f"holders including the client); got t = {self.threshold}."
            )
        largest = max(len(nb) + 1 for nb in self.graph.values())
        if 2 * self.threshold <= largest and not self.allow_unsafe_threshold:
            raise ConfigError(
                f"threshold t = {self.threshold} is not a strict majority of a neighbourhood of "
                f"{largest} holders; raise it above {largest // 2} or set "
                "allow_unsafe_threshold=True."
            )
        if not 1 <= self.bits <= 64:
            raise ConfigError(f"bits must be between 1 and 64; got {self.bits}.")
        if self.dim < 1:
            raise ConfigError(f"the update dimension must be positive; got {self.dim}.")
        if self.prg not in prg.PRG_ALGORITHMS:
            raise ConfigError(f"prg must be one of {', '.join(prg.PRG_ALGORITHMS)}.")
        if self.aead not in crypto.AEAD_ALGORITHMS:
            raise ConfigError(f"aead must be one of {', '.join(crypto.AEAD_ALGORITHMS)}.")
        if self.field_bits not in (31, 127):
            raise ConfigError(f"shamir_field_bits must be 31 or 127; got {self.field_bits}.")
        for u, nb in self.graph.items():
            if u in nb or any(u not in self.graph.get(v, ()) for v in nb):
                raise ConfigError("the communication graph must be undirected and loop-free.")

    @property
    def word_dtype(self) -> np.dtype:
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @property
    def prime(self) -> int:
        return shamir.prime_for_bits(self.field_bits)

    @property
    def chunks(self) -> int:
        """Field elements per 32-byte secret."""
        return shamir.chunks_per_secret(SECRET_BYTES, self.prime)

    @property
    def share_bytes(self) -> int:
        """Bytes of one serialized share of one secret."""
        return self.chunks * shamir.element_bytes(self.prime)

    def holders(self, u: int) -> frozenset[int]:
        """Closed neighbourhood of u: the parties holding shares of u's secrets."""
        return self._closed[u]

    @property
    def _closed(self) -> dict[int, frozenset[int]]:
        cache: dict[int, frozenset[int]] | None = self.__dict__.get("_closed_cache")
        if cache is None:
            cache = {u: nb | {u} for u, nb in self.graph.items()}
            object.__setattr__(self, "_closed_cache", cache)
        return cache

    def reduce(self, words: np.ndarray) -> np.ndarray:
        if self.bits in (32, 64):
            return words
        return words & words.dtype.type((1 << self.bits) - 1)


def _advertise_message(round_index: int, cid: int, c_pk: bytes, s_pk: bytes) -> bytes:
    return b"fedguard/secagg/advertise" + struct.pack(">QI", round_index, cid) + c_pk + s_pk


def _consistency_message(round_index: int, survivors: Iterable[int]) -> bytes:
    ids = np.asarray(sorted(survivors), dtype=">u4").tobytes()
    return b"fedguard/secagg/consistency" + struct.pack(">Q", round_index) + ids


class Client:
    """One client's side of the protocol; every method takes and returns message bytes."""

    def __init__(
        self,
        cid: int,
        config: ProtocolConfig,
        ring_input: np.ndarray,
        signing_key: Ed25519PrivateKey | None = None,
        verify_keys: Mapping[int, bytes] | None = None,
    ) -> None:
        if cid not in config.graph:
            raise ConfigError(f"client {cid} is not part of this round.")
        x = np.asarray(ring_input)
        if x.shape != (config.dim,):
            raise ProtocolViolation(
                f"client {cid}'s input has shape {tuple(x.shape)}; the round aggregates "
                f"vectors of length {config.dim}."
            )
        if config.consistency_check and (signing_key is None or verify_keys is None):
            raise ConfigError("the consistency check needs signing keys for every client.")
        self.cid = cid
        self.cfg = config
        self.x = config.reduce(x.astype(config.word_dtype))
        self.signing_key = signing_key
        self.verify_keys = verify_keys or {}
        self.holders = config.holders(cid)
        self.keys: dict[int, tuple[bytes, bytes]] = {}
        self.shares_held: dict[int, np.ndarray] = {}  # owner -> (2 * chunks,) field elements
        self.share_keys_with: dict[int, bytes] = {}  # peer -> AEAD key (both directions)
        self.u2: set[int] = set()
        self.u3: set[int] = set()
        self.answered_survivors = False
        self.answered_unmask = False

    def _payload(self, message: bytes, stage: Stage) -> bytes:
        h = peek(message)
        if h.sender != SERVER or h.receiver != self.cid:
            raise ProtocolViolation(
                f"client {self.cid} received a message from {h.sender} addressed to {h.receiver}."
            )
        if h.stage != stage:
            raise ProtocolViolation(
                f"client {self.cid} expected a {stage.name} message, got {h.stage.name}."
            )
        if h.round_index != self.cfg.round_index:
            raise ProtocolViolation(
                f"client {self.cid} received a {stage.name} message of round {h.round_index} "
                f"during round {self.cfg.round_index} (stale or replayed)."
            )
        return payload(message)

    def _abort_unless(self, count: int, what: str) -> None:
        if count < self.cfg.threshold:
            raise ProtocolAbort(
                f"client {self.cid} sees only {count} {what} in its neighbourhood; the threshold "
                f"is {self.cfg.threshold}, so the round is aborted."
            )

    # -- step 0 -----------------------------------------------------------------------------
    def advertise(self) -> bytes:
        self.c_sk = crypto.new_agreement_key()
        self.s_sk = crypto.new_agreement_key()
        self.c_pk, self.s_pk = crypto.public_bytes(self.c_sk), crypto.public_bytes(self.s_sk)
        sig = b""
        if self.cfg.consistency_check:
            assert self.signing_key is not None
            msg = _advertise_message(self.cfg.round_index, self.cid, self.c_pk, self.s_pk)
            sig = crypto.sign(self.signing_key, msg)
        body = advertise_payload(self.c_pk, self.s_pk, sig)
        return pack(Stage.ADVERTISE, self.cfg.round_index, self.cid, SERVER, body)

    # -- step 1 -----------------------------------------------------------------------------
    def share_keys(self, message: bytes) -> bytes:
        cfg = self.cfg
        for cid, c_pk, s_pk, sig in read_keys(self._payload(message, Stage.KEYS)):
            if cid not in self.holders:
                raise ProtocolViolation(
                    f"client {self.cid} received keys of client {cid}, which is not a neighbour."
                )
            if cid in self.keys:
                raise ProtocolViolation(f"client {self.cid} received keys of {cid} twice.")
            if c_pk == s_pk:
                raise ProtocolViolation(f"client {cid} advertised two identical public keys.")
            if cfg.consistency_check:
                try:
                    msg = _advertise_message(cfg.round_index, cid, c_pk, s_pk)
                    crypto.verify(self.verify_keys[cid], sig, msg)
                except (crypto.AuthenticationFailure, KeyError) as exc:
                    raise ProtocolViolation(
                        f"the advertised keys of client {cid} carry no valid signature."
                    ) from exc
            self.keys[cid] = (c_pk, s_pk)
        if self.keys.get(self.cid) != (self.c_pk, self.s_pk):
            raise ProtocolViolation(f"the server altered or omitted client {self.cid}'s own keys.")
        self._abort_unless(len(self.keys), "clients with advertised keys")
        self.b = os.urandom(SECRET_BYTES)
        holders = sorted(self.keys)
        secrets = np.concatenate(
            [
                shamir.secret_to_field(crypto.private_bytes(self.s_sk), cfg.prime),
                shamir.secret_to_field(self.b, cfg.prime),
            ]
        )  # (2 * chunks,)
        xs = np.asarray([h + 1 for h in holders], dtype=np.int64)
        shares = shamir.split(secrets, xs, cfg.threshold, cfg.prime)  # (holders, 2 * chunks)
        out: list[tuple[int, bytes]] = []
        for row, v in enumerate(holders):
            if v == self.cid:
                self.shares_held[v] = shares[row]
                continue
            key = crypto.agree(self.c_sk, self.keys[v][0], _SHARE_LABEL, cfg.round_index)
            self.share_keys_with[v] = key  # symmetric: reused to decrypt v's share to us
            plain = struct.pack(">II", self.cid, v) + shamir.elements_to_bytes(
                shares[row], cfg.prime
            )
            ad = crypto.associated_data(cfg.round_index, self.cid, v)
            out.append((v, crypto.encrypt(key, plain, ad, cfg.aead)))
        body = ciphertexts_payload(out)
        return pack(Stage.SHARES, cfg.round_index, self.cid, SERVER, body)

    # -- step 2 -----------------------------------------------------------------------------
    def masked_input(self, message: bytes) -> bytes:
        cfg = self.cfg
        senders: set[int] = set()
        for u, ct in read_ciphertexts(self._payload(message, Stage.FORWARD), "FORWARD"):
            if u not in self.keys or u == self.cid:
                raise ProtocolViolation(
                    f"client {self.cid} received a share from client {u}, unknown to it."
                )
            if u in senders:
                raise ProtocolViolation(f"client {self.cid} received client {u}'s share twice.")
            key = self.share_keys_with[u]
            try:
                plain = crypto.decrypt(
                    key, ct, crypto.associated_data(cfg.round_index, u, self.cid), cfg.aead
                )
            except crypto.AuthenticationFailure as exc:
                raise ProtocolViolation(
                    f"the share sent by client {u} to client {self.cid} failed authentication "
                    "(tampered, replayed or misrouted)."
                ) from exc
            if (
                plain[:8] != struct.pack(">II", u, self.cid)
                or len(plain) != 8 + 2 * cfg.share_bytes
            ):
                raise ProtocolViolation(f"the share from client {u} names the wrong parties.")
            try:
                self.shares_held[u] = shamir.bytes_to_elements(plain[8:], cfg.prime)
            except ValueError as exc:
                raise ProtocolViolation(f"the share from client {u} is malformed.") from exc
            senders.add(u)
        self.u2 = senders | {self.cid}
        self._abort_unless(len(self.u2), "clients that shared keys")
        y = self.x.copy()  # (d,) words, arithmetic wraps mod 2^32 / 2^64
        prg.accumulate(y, self.b, +1, cfg.prg)
        for v in sorted(senders):
            pair_key = crypto.agree(self.s_sk, self.keys[v][1], _MASK_LABEL, cfg.round_index)
            prg.accumulate(y, pair_key, +1 if self.cid > v else -1, cfg.prg)
        body = masked_payload(cfg.reduce(y))
        return pack(Stage.MASKED, cfg.round_index, self.cid, SERVER, body)

    # -- step 3 -----------------------------------------------------------------------------
    def receive_survivors(self, message: bytes) -> bytes | None:
        cfg = self.cfg
        if self.answered_survivors:
            raise ProtocolViolation(
                f"client {self.cid} already received a survivor list this round; a second one "
                "could make it reveal both secrets of a client."
            )
        self.answered_survivors = True
        u3 = read_ids(self._payload(message, Stage.SURVIVORS))
        if len(set(u3)) != len(u3) or any(u not in cfg.graph for u in u3):
            raise ProtocolViolation("the survivor list repeats a client or names an unknown one.")
        local = set(u3) & self.holders
        if not local <= self.u2:
            bad = sorted(local - self.u2)[0]
            raise ProtocolViolation(
                f"the server lists client {bad} as surviving, but it never shared keys with "
                f"client {self.cid}."
            )
        if len(u3) < cfg.threshold:
            raise ProtocolAbort(
                f"only {len(u3)} clients sent masked inputs; the threshold is {cfg.threshold}, "
                "so the round is aborted."
            )
        self.u3 = set(u3)
        if not cfg.consistency_check:
            return None
        assert self.signing_key is not None
        sig = crypto.sign(self.signing_key, _consistency_message(cfg.round_index, u3))
        return pack(Stage.CONSISTENCY, cfg.round_index, self.cid, SERVER, sig)

    # -- step 4 -----------------------------------------------------------------------------
    def unmask(self, signatures: bytes | None = None) -> bytes:
        cfg = self.cfg
        if self.answered_unmask or not self.answered_survivors:
            raise ProtocolViolation(
                f"client {self.cid} answers one unmasking request per round, after the survivor "
                "list."
            )
        self.answered_unmask = True
        if cfg.consistency_check:
            if signatures is None:
                raise ProtocolViolation(f"client {self.cid} got no consistency signatures.")
            msg = _consistency_message(cfg.round_index, self.u3)
            signers: set[int] = set()
            for cid, sig in read_signatures(self._payload(signatures, Stage.SIGNATURES)):
                if cid not in self.u3 or cid in signers:
                    raise ProtocolViolation(
                        f"a consistency signature claims to come from client {cid}, which did "
                        "not survive or signed twice."
                    )
                try:
                    crypto.verify(self.verify_keys[cid], sig, msg)
                except (crypto.AuthenticationFailure, KeyError) as exc:
                    raise ProtocolViolation(
                        f"client {cid}'s consistency signature does not verify: the server "
                        "showed different survivor sets to different clients."
                    ) from exc
                signers.add(cid)
            self._abort_unless(len(signers), "valid consistency signatures")
        survived = self.u2 & self.u3
        dropped = self.u2 - self.u3
        assert survived.isdisjoint(dropped), "a client's key and seed shares must never both leave"
        c = cfg.chunks
        entries: list[tuple[int, ShareKind, bytes]] = []
        for w in sorted(self.u2):
            share = self.shares_held[w]
            if w in survived:
                entries.append((w, ShareKind.SEED, shamir.elements_to_bytes(share[c:], cfg.prime)))
            else:
                entries.append((w, ShareKind.KEY, shamir.elements_to_bytes(share[:c], cfg.prime)))
        body = unmask_payload(entries)
        return pack(Stage.UNMASK, cfg.round_index, self.cid, SERVER, body)


class Server:
    """The aggregator's side; each step consumes the clients' messages and emits replies."""

    def __init__(self, config: ProtocolConfig, verify_keys: Mapping[int, bytes] | None = None):
        self.cfg = config
        self.ids = frozenset(config.graph)
        self.verify_keys = verify_keys or {}
        self.keys: dict[int, tuple[bytes, bytes, bytes]] = {}
        self.acc = np.zeros(config.dim, dtype=config.word_dtype)  # (d,) running Σ y_u
        self.u1: frozenset[int] = frozenset()
        self.u2: frozenset[int] = frozenset()
        self.u3: frozenset[int] = frozenset()
        self.u4: frozenset[int] = frozenset()
        self.u5: frozenset[int] = frozenset()
        self.reconstructed: dict[int, ShareKind] = {}

    def _collect(
        self, messages: list[bytes], stage: Stage, allowed: frozenset[int]
    ) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for msg in messages:
            h = peek(msg)
            if h.sender not in self.ids:
                raise ProtocolViolation(
                    f"the server received a {h.stage.name} message from unknown client {h.sender}."
                )
            if h.stage != stage or h.receiver != SERVER:
                raise ProtocolViolation(
                    f"client {h.sender} sent a {h.stage.name} message during the {stage.name} step."
                )
            if h.round_index != self.cfg.round_index:
                raise ProtocolViolation(
                    f"client {h.sender} sent a message of round {h.round_index} during round "
                    f"{self.cfg.round_index} (stale or replayed)."
                )
            if h.sender in out:
                raise ProtocolViolation(
                    f"client {h.sender} sent its {stage.name} message twice (replayed)."
                )
            if h.sender not in allowed:
                raise ProtocolViolation(
                    f"client {h.sender} sent a {stage.name} message without completing the "
                    "previous step."
                )
            out[h.sender] = payload(msg)
        return out

    def _require(self, count: int, what: str) -> None:
        if count < self.cfg.threshold:
            raise ProtocolAbort(
                f"only {count} clients {what}; the threshold is {self.cfg.threshold}, so the "
                "round is aborted."
            )

    def _reply(self, stage: Stage, receiver: int, body: bytes) -> bytes:
        return pack(stage, self.cfg.round_index, SERVER, receiver, body)

    def advertise(self, messages: list[bytes]) -> list[bytes]:
        cfg = self.cfg
        for cid, body in self._collect(messages, Stage.ADVERTISE, self.ids).items():
            c_pk, s_pk, sig = read_advertise(body)
            if cfg.consistency_check:
                try:
                    msg = _advertise_message(cfg.round_index, cid, c_pk, s_pk)
                    crypto.verify(self.verify_keys[cid], sig, msg)
                except (crypto.AuthenticationFailure, KeyError) as exc:
                    raise ProtocolViolation(
                        f"client {cid}'s advertised keys carry no valid signature."
                    ) from exc
            self.keys[cid] = (c_pk, s_pk, sig)
        self.u1 = frozenset(self.keys)
        self._require(len(self.u1), "advertised keys")
        out = []
        for v in sorted(self.u1):
            entries = [(w, *self.keys[w]) for w in sorted(cfg.holders(v) & self.u1)]
            out.append(self._reply(Stage.KEYS, v, keys_payload(entries)))
        return out

    def shares(self, messages: list[bytes]) -> list[bytes]:
        """Route every encrypted share to its receiver (vectorized over fixed-size entries)."""
        cfg = self.cfg
        got = self._collect(messages, Stage.SHARES, self.u1)
        ct_bytes = crypto.NONCE_BYTES + 8 + 2 * cfg.share_bytes + 16
        senders, receivers, blobs = [], [], []
        for u, body in got.items():
            rec = read_ciphertext_records(body, ct_bytes, "SHARES")
            peers = rec["peer"].astype(np.int64)
            allowed = np.asarray(sorted(cfg.graph[u] & self.u1), dtype=np.int64)
            ok = np.isin(peers, allowed)
            if not ok.all() or np.unique(peers).size != peers.size:
                bad = int(peers[~ok][0]) if not ok.all() else int(peers[0])
                raise ProtocolViolation(
                    f"client {u} addressed a share to client {bad}, which is not one of its "
                    "neighbours with advertised keys (or twice)."
                )
            senders.append(np.full(peers.size, u, dtype=np.int64))
            receivers.append(peers)
            blobs.append(rec["ct"])
        self.u2 = frozenset(got)
        self._require(len(self.u2), "shared their keys")
        sender = np.concatenate(senders)  # (E,)
        receiver = np.concatenate(receivers)  # (E,)
        blob = np.concatenate(blobs)  # (E,) fixed-size ciphertexts
        order = np.lexsort((sender, receiver))
        sender, receiver, blob = sender[order], receiver[order], blob[order]
        bounds = np.searchsorted(receiver, np.asarray(sorted(self.u2), dtype=np.int64), "left")
        ends = np.searchsorted(receiver, np.asarray(sorted(self.u2), dtype=np.int64), "right")
        out = []
        for v, lo, hi in zip(sorted(self.u2), bounds, ends, strict=True):
            fwd = np.empty(int(hi - lo), dtype=ciphertext_dtype(ct_bytes))
            fwd["peer"], fwd["length"], fwd["ct"] = sender[lo:hi], ct_bytes, blob[lo:hi]
            out.append(self._reply(Stage.FORWARD, v, ciphertext_records_payload(fwd)))
        return out

    def masked(self, messages: list[bytes]) -> list[bytes]:
        cfg = self.cfg
        got = self._collect(messages, Stage.MASKED, self.u2)
        for body in got.values():
            self.acc += read_masked(body, cfg.dim, cfg.word_dtype)
        self.u3 = frozenset(got)
        self._require(len(self.u3), "sent masked inputs")
        body = ids_payload(sorted(self.u3))
        return [self._reply(Stage.SURVIVORS, v, body) for v in sorted(self.u3)]

    def consistency(self, messages: list[bytes]) -> list[bytes]:
        cfg = self.cfg
        got = self._collect(messages, Stage.CONSISTENCY, self.u3)
        msg = _consistency_message(cfg.round_index, self.u3)
        for cid, sig in got.items():
            try:
                crypto.verify(self.verify_keys[cid], sig, msg)
            except (crypto.AuthenticationFailure, KeyError) as exc:
                raise ProtocolViolation(
                    f"client {cid}'s consistency signature is invalid."
                ) from exc
        self.u4 = frozenset(got)
        self._require(len(self.u4), "signed the survivor list")
        body = signatures_payload(sorted(got.items()))
        return [self._reply(Stage.SIGNATURES, v, body) for v in sorted(self.u4)]

    def unmask(self, messages: list[bytes]) -> np.ndarray:
        """Reconstruct what is needed and return ``Σ_{u ∈ U3} x_u mod R`` as ``(d,)`` words."""
        cfg = self.cfg
        allowed = self.u4 if cfg.consistency_check else self.u3
        got = self._collect(messages, Stage.UNMASK, allowed)
        self.u5 = frozenset(got)
        self._require(len(self.u5), "answered the unmasking request")
        u2 = np.asarray(sorted(self.u2), dtype=np.int64)
        u3 = np.asarray(sorted(self.u3), dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for v, body in got.items():
            owners, kinds, elems = read_unmask_arrays(body, cfg.chunks, cfg.prime)
            holdable = np.asarray(sorted(cfg.holders(v)), dtype=np.int64)
            ok = np.isin(owners, holdable) & np.isin(owners, u2)
            if not ok.all() or np.unique(owners).size != owners.size:
                bad = int(owners[~ok][0]) if not ok.all() else int(owners[0])
                raise ProtocolViolation(
                    f"client {v} sent a share of client {bad}, which it cannot hold (or twice)."
                )
            expected = np.where(np.isin(owners, u3), int(ShareKind.SEED), int(ShareKind.KEY))
            wrong = np.flatnonzero(kinds != expected)
            if wrong.size:
                i = int(wrong[0])
                got_kind, want = ShareKind(int(kinds[i])), ShareKind(int(expected[i]))
                raise ProtocolViolation(
                    f"client {v} sent a {got_kind.name.lower()} share of client {int(owners[i])}, "
                    f"but the server needs its {want.name.lower()} share."
                )
            parts.append((owners, kinds, np.full(owners.size, v + 1, dtype=np.int64), elems))
        all_owners = np.concatenate([p[0] for p in parts])  # (E,)
        all_kinds = np.concatenate([p[1] for p in parts])  # (E,)
        all_points = np.concatenate([p[2] for p in parts])  # (E,) share points x = holder + 1
        all_elems = np.concatenate([p[3] for p in parts])  # (E, chunks)
        shares = {
            kind: _ShareTable(all_owners, all_points, all_elems, all_kinds == int(kind))
            for kind in (ShareKind.KEY, ShareKind.SEED)
        }
        need_seed = set(self.u3)
        need_key = {w for w in self.u2 - self.u3 if cfg.graph[w] & self.u3}
        assert need_seed.isdisjoint(need_key), "never reconstruct both secrets of one client"
        seeds = self._reconstruct(shares[ShareKind.SEED], need_seed, "self-mask seed")
        mask_keys = self._reconstruct(shares[ShareKind.KEY], need_key, "masking key")
        for w in need_seed:
            self.reconstructed[w] = ShareKind.SEED
        for w in need_key:
            assert w not in self.reconstructed, "never reconstruct both secrets of one client"
            self.reconstructed[w] = ShareKind.KEY
        total = self.acc.copy()
        for w in sorted(need_seed):
            prg.accumulate(total, seeds[w], -1, cfg.prg)
        for w in sorted(need_key):
            sk = crypto.agreement_key_from_bytes(mask_keys[w])
            if crypto.public_bytes(sk) != self.keys[w][1]:
                raise ProtocolViolation(
                    f"the reconstructed masking key of client {w} does not match its advertised "
                    "public key (inconsistent shares)."
                )
            for v in sorted(cfg.graph[w] & self.u3):
                pair_key = crypto.agree(sk, self.keys[v][1], _MASK_LABEL, cfg.round_index)
                # y_v carried Δ_vw · PRG(s_vw) with Δ_vw = +1 if v > w: take it out.
                prg.accumulate(total, pair_key, -1 if v > w else +1, cfg.prg)
        return cfg.reduce(total)

    def _reconstruct(self, table: _ShareTable, owners: set[int], what: str) -> dict[int, bytes]:
        cfg = self.cfg
        t = cfg.threshold
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for w in sorted(owners):
            points, elems = table.of(w)  # sorted by share point
            if points.size < t:
                raise ProtocolAbort(
                    f"only {points.size} holders of client {w}'s {what} shares answered; the "
                    f"threshold is {t}, so the round is aborted."
                )
            groups[tuple(points[:t].tolist())].append((w, elems[:t]))
        out: dict[int, bytes] = {}
        for xs, items in groups.items():
            batch = np.stack([s for _, s in items])  # (b, t, chunks)
            secrets = shamir.combine(batch, np.asarray(xs, dtype=np.int64), cfg.prime)
            for (w, _), sec in zip(items, secrets, strict=True):
                try:
                    out[w] = shamir.field_to_secret(sec, SECRET_BYTES, cfg.prime)
                except ValueError as exc:
                    raise ProtocolViolation(
                        f"the shares of client {w}'s {what} are inconsistent."
                    ) from exc
        return out


class _ShareTable:
    """Shares of one kind received in the unmasking step, grouped by owner (vectorized)."""

    def __init__(
        self, owners: np.ndarray, points: np.ndarray, elems: np.ndarray, select: np.ndarray
    ) -> None:
        owners, points, elems = owners[select], points[select], elems[select]
        order = np.lexsort((points, owners))  # by owner, then share point
        self.owners, self.points, self.elems = owners[order], points[order], elems[order]
        self.keys, self.starts, self.counts = np.unique(
            self.owners, return_index=True, return_counts=True
        )

    def of(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(np.searchsorted(self.keys, owner))
        if i >= self.keys.size or self.keys[i] != owner:
            return np.zeros(0, dtype=np.int64), self.elems[:0]
        lo, n = int(self.starts[i]), int(self.counts[i])
        return self.points[lo : lo + n], self.elems[lo : lo + n]


@dataclass
class PartyCost:
    """Compute seconds and bytes a party spent in one round."""

    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True)
class ProtocolResult:
    residue_sum: np.ndarray  # (d,) Σ_{u ∈ U3} x_u mod R
    stage_sets: Mapping[str, tuple[int, ...]]
    client_costs: Mapping[int, PartyCost]
    server_cost: PartyCost
    reconstructed: Mapping[int, ShareKind] = field(default_factory=dict)

    @property
    def survivors(self) -> tuple[int, ...]:
        """Clients whose inputs are in the sum (U3)."""
        return self.stage_sets["masked"]


Intercept = Callable[[Stage, list[bytes]], list[bytes]]


def run_protocol(
    config: ProtocolConfig,
    inputs: Mapping[int, np.ndarray],
    drop_points: Mapping[int, DropPoint | int] | None = None,
    intercept: Intercept | None = None,
    client_seconds: Mapping[int, float] | None = None,
) -> ProtocolResult:
    """Run one round with every party in this process, exchanging serialized messages.

    ``inputs`` maps client id → ``(d,)`` residues in Z_R. ``drop_points`` says where a client
    goes silent. ``intercept(stage, messages)`` sees (and may alter, drop, duplicate or inject)
    every batch of messages on the wire — tests use it to play the network adversary.
    ``client_seconds`` adds time a client spent before the protocol (its encoding).
    """
    ids = tuple(sorted(config.graph))
    if set(inputs) != set(ids):
        unknown = sorted(set(inputs) ^ set(ids))[0]
        raise ProtocolViolation(f"client {unknown} is not registered in this round's graph.")
    drops = {u: DropPoint(int((drop_points or {}).get(u, 0))) for u in ids}
    signing: dict[int, Ed25519PrivateKey] = {}
    verify_keys: dict[int, bytes] = {}
    if config.consistency_check:  # long-term identities from a PKI: set up outside the round
        for u in ids:
            signing[u] = crypto.new_signing_key()
            verify_keys[u] = crypto.public_bytes(signing[u])
    costs = {u: PartyCost(seconds=float((client_seconds or {}).get(u, 0.0))) for u in ids}
    server_cost = PartyCost()
    clients = {
        u: Client(u, config, inputs[u], signing.get(u), verify_keys if signing else None)
        for u in ids
    }
    server = Server(config, verify_keys)
    wire: Intercept = intercept if intercept is not None else (lambda _s, m: m)

    def uplink(
        stage: Stage,
        step: Callable[[Client, bytes], bytes | None],
        inbox: Mapping[int, bytes],
        alive: set[int],
    ) -> list[bytes]:
        out: list[bytes] = []
        for u in sorted(alive & set(inbox)):
            t0 = time.perf_counter()
            msg = step(clients[u], inbox[u])
            costs[u].seconds += time.perf_counter() - t0
            if msg is not None:
                costs[u].bytes_sent += len(msg)
                out.append(msg)
        return wire(stage, out)

    def serve(
        stage: Stage, step: Callable[[list[bytes]], list[bytes]], msgs: list[bytes]
    ) -> dict[int, bytes]:
        server_cost.bytes_received += sum(len(m) for m in msgs)
        t0 = time.perf_counter()
        replies = step(msgs)
        server_cost.seconds += time.perf_counter() - t0
        server_cost.bytes_sent += sum(len(m) for m in replies)
        inbox: dict[int, bytes] = {}
        for m in wire(stage, replies):
            h = peek(m)
            if h.receiver in inbox:
                raise ProtocolViolation(
                    f"client {h.receiver} received two {h.stage.name} messages (replayed)."
                )
            if h.receiver in costs:
                costs[h.receiver].bytes_received += len(m)
                inbox[h.receiver] = m
        return inbox

    alive = set(ids)
    first = uplink(Stage.ADVERTISE, lambda c, _m: c.advertise(), {u: b"" for u in ids}, alive)
    inbox = serve(Stage.KEYS, server.advertise, first)
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_SHARES}
    inbox = serve(
        Stage.FORWARD, server.shares, uplink(Stage.SHARES, Client.share_keys, inbox, alive)
    )
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_MASKED}
    masked = uplink(Stage.MASKED, Client.masked_input, inbox, alive)
    inbox = serve(Stage.SURVIVORS, server.masked, masked)
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_UNMASK}
    signed = uplink(Stage.CONSISTENCY, Client.receive_survivors, inbox, alive)
    if config.consistency_check:
        inbox = serve(Stage.SIGNATURES, server.consistency, signed)
        unmask_msgs = uplink(Stage.UNMASK, Client.unmask, inbox, alive)
    else:
        unmask_msgs = uplink(
            Stage.UNMASK, lambda c, _m: c.unmask(None), {u: b"" for u in inbox}, alive
        )
    server_cost.bytes_received += sum(len(m) for m in unmask_msgs)
    t0 = time.perf_counter()
    total = server.unmask(unmask_msgs)
    server_cost.seconds += time.perf_counter() - t0
    sets = {
        "advertised": tuple(sorted(server.u1)),
        "shared": tuple(sorted(server.u2)),
        "masked": tuple(sorted(server.u3)),
        "signed": tuple(sorted(server.u4)),
        "unmasked": tuple(sorted(server.u5)),
    }
    return ProtocolResult(total, sets, costs, server_cost, dict(server.reconstructed))


__all__ = [
    "Client",
    "DropPoint",
    "PartyCost",
    "ProtocolAbort",
    "ProtocolConfig",
    "ProtocolResult",
    "ProtocolViolation",
    "SecAggError",
    "Server",
    "run_protocol",
]
