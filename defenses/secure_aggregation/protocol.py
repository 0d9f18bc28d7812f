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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from defenses.secure_aggregation import crypto, prg, shamir
from defenses.secure_aggregation.authentication import (
    advertise_message,
    consistency_message,
    graph_seed,
    model_message,
    open_message,
    seed_commitment,
    share_commitment,
    sign_message,
)
from defenses.secure_aggregation.errors import (
    ModelCommitmentMismatch,
    ProtocolAbort,
    ProtocolViolation,
    SecAggError,
)
from defenses.secure_aggregation.graph import Graph, public_harary_graph
from defenses.secure_aggregation.messages import (
    DIGEST_BYTES,
    HEADER_BYTES,
    MODEL_BLOCK_BYTES,
    SALT_BYTES,
    SERVER,
    SIG_BYTES,
    ShareKind,
    Stage,
    advertise_payload,
    ciphertext_dtype,
    ciphertext_records_payload,
    ciphertexts_payload,
    commitments_payload,
    ids_payload,
    keys_payload,
    masked_bytes,
    masked_payload,
    pack,
    payload,
    peek,
    read_advertise,
    read_ciphertext_records,
    read_ciphertexts,
    read_commitments,
    read_ids,
    read_keys_and_cohort,
    read_masked,
    read_signatures,
    read_unmask_arrays,
    signatures_payload,
    split_ciphertext_block,
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
    active_adversary: bool = False  # signed messages, commitments, bound keys, public graph
    min_cohort: int | None = None  # None: 3 in the active variant, else 1
    model_commitment: bytes = b""  # hash of the broadcast model, bound into every key and view
    #: each client commits to the model it received (signed, checked by its neighbours, bound
    #: into its pairwise keys): clients holding different models abort the round
    bind_model: bool = False

    def __post_init__(self) -> None:
        if not self.graph:
            raise ConfigError("secure aggregation needs at least one client.")
        if self.min_cohort is not None and (
            not isinstance(self.min_cohort, int) or self.min_cohort < 1
        ):
            raise ConfigError(f"min_cohort must be a positive integer; got {self.min_cohort!r}.")
        if self.active_adversary and self.cohort_floor < 2:
            raise ConfigError(
                "min_cohort must be at least 2 in the active-adversary variant: a sum over one "
                "client is that client's update."
            )
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
    def signed(self) -> bool:
        """Signed key advertisements and the consistency round (every variant that asks)."""
        return self.consistency_check or self.active_adversary or self.bind_model

    @property
    def cohort_floor(self) -> int:
        """Fewest clients a sum may cover (U1 and U3); below it the round aborts."""
        if self.min_cohort is not None:
            return self.min_cohort
        return 3 if self.active_adversary else 1

    @property
    def session(self) -> bytes:
        """HKDF salt and signature context: the round and the broadcast-model commitment."""
        cached: bytes | None = self.__dict__.get("_session_cache")
        if cached is None:
            cached = crypto.session_salt(self.round_index, self.model_commitment)
            object.__setattr__(self, "_session_cache", cached)
        return cached

    @property
    def salt_bytes(self) -> int:
        """Bytes of the commitment salt carried with each share (active variant only)."""
        return SALT_BYTES if self.active_adversary else 0

    @property
    def share_ciphertext_bytes(self) -> int:
        """Bytes of one encrypted share message (nonce, ids, two shares, salt, tag)."""
        return crypto.NONCE_BYTES + 8 + 2 * self.share_bytes + self.salt_bytes + 16

    def is_complete(self) -> bool:
        n = len(self.graph)
        return all(len(nb) == n - 1 for nb in self.graph.values())

    def with_public_graph(self, seed: bytes) -> ProtocolConfig:
        """The same round on the Harary graph of the same degree drawn from ``seed``.

        Memoized per seed: in this one-process simulation every party derives the same graph,
        and a real client would compute only its own neighbourhood (one permutation, O(n))."""
        if self.is_complete():
            return self
        cache: dict[bytes, ProtocolConfig] = self.__dict__.setdefault("_public_cache", {})
        if seed not in cache:
            degree = len(next(iter(self.graph.values())))
            graph = public_harary_graph(tuple(sorted(self.graph)), degree, seed)
            cache[seed] = replace(self, graph=graph)
        return cache[seed]

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


class PublicBeacon:
    """A simulated public randomness beacon (such as drand): 32 fresh bytes per round, drawn on
    the first request, which every party makes only after the advertise stage, when all keys
    are committed. Neither the server nor any client chooses it."""

    def __init__(self) -> None:
        self._values: dict[int, bytes] = {}

    def __call__(self, round_index: int) -> bytes:
        if round_index not in self._values:
            self._values[round_index] = os.urandom(32)
        return self._values[round_index]


class Client:
    """One client's side of the protocol; every method takes and returns message bytes."""

    def __init__(
        self,
        cid: int,
        config: ProtocolConfig,
        ring_input: np.ndarray,
        signing_key: Ed25519PrivateKey | None = None,
        verify_keys: Mapping[int, bytes] | None = None,
        beacon: Callable[[int], bytes] | None = None,
        model_digest: bytes | None = None,
    ) -> None:
        if cid not in config.graph:
            raise ConfigError(f"client {cid} is not part of this round.")
        x = np.asarray(ring_input)
        if x.shape != (config.dim,):
            raise ProtocolViolation(
                f"client {cid}'s input has shape {tuple(x.shape)}; the round aggregates "
                f"vectors of length {config.dim}."
            )
        if config.signed and (signing_key is None or verify_keys is None):
            raise ConfigError("the consistency check needs signing keys for every client.")
        if config.active_adversary and beacon is None:
            raise ConfigError("the active-adversary variant needs a public beacon.")
        if config.bind_model and (model_digest is None or len(model_digest) != DIGEST_BYTES):
            raise ConfigError(
                f"model_commitment needs the {DIGEST_BYTES}-byte digest of the model client "
                f"{cid} received."
            )
        self.model_digest = model_digest or b""
        self.cid = cid
        self.cfg = config
        self.x = config.reduce(x.astype(config.word_dtype))
        self.signing_key = signing_key
        self.verify_keys = verify_keys or {}
        self.beacon = beacon
        self.holders = config.holders(cid)
        self.keys: dict[int, tuple[bytes, bytes]] = {}
        self.shares_held: dict[int, np.ndarray] = {}  # owner -> (2 * chunks,) field elements
        self.salts_held: dict[int, bytes] = {}  # owner -> commitment salt (active variant)
        self.share_keys_with: dict[int, bytes] = {}  # peer -> AEAD key (both directions)
        self.u1: frozenset[int] = frozenset(config.graph)
        self.u2: set[int] = set()
        self.u3: set[int] = set()
        self.view = b""  # active variant: the graph seed (hashes U1, the beacon, the session)
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

    def _send(self, stage: Stage, body: bytes) -> bytes:
        message = pack(stage, self.cfg.round_index, self.cid, SERVER, body)
        if not self.cfg.active_adversary:
            return message
        if self.signing_key is None:  # checked in __init__; kept explicit for python -O
            raise ConfigError("the active-adversary variant needs a signing key per client.")
        return sign_message(self.signing_key, self.cfg.session, message)

    def _sign(self, message: bytes) -> bytes:
        if self.signing_key is None:
            raise ConfigError("the consistency check needs signing keys for every client.")
        return crypto.sign(self.signing_key, message)

    def _abort_unless(self, count: int, what: str) -> None:
        if count < self.cfg.threshold:
            raise ProtocolAbort(
                f"client {self.cid} sees only {count} {what} in its neighbourhood; the threshold "
                f"is {self.cfg.threshold}, so the round is aborted."
            )

    def _pair_key(
        self, private: X25519PrivateKey, own_pk: bytes, v: int, peer_pk: bytes, label: bytes
    ) -> bytes:
        cfg = self.cfg
        if (
            cfg.bind_model
        ):  # the model this client holds: a peer holding another derives another key
            label = label + b"/model/" + self.model_digest
        if cfg.active_adversary:
            own, peer = (self.cid, own_pk), (v, peer_pk)
            return crypto.agree_bound(private, own, peer, label, cfg.round_index, cfg.session)
        return crypto.agree(private, peer_pk, label, cfg.round_index)

    # -- step 0 -----------------------------------------------------------------------------
    def advertise(self) -> bytes:
        cfg = self.cfg
        self.c_sk = crypto.new_agreement_key()
        self.s_sk = crypto.new_agreement_key()
        self.c_pk, self.s_pk = crypto.public_bytes(self.c_sk), crypto.public_bytes(self.s_sk)
        sig = b""
        if cfg.signed:
            session = cfg.session if cfg.active_adversary else b""
            sig = self._sign(
                advertise_message(cfg.round_index, self.cid, self.c_pk, self.s_pk, session)
            )
        if cfg.bind_model:
            model = model_message(cfg.round_index, self.cid, self.model_digest)
            sig += self.model_digest + self._sign(model)
        return self._send(Stage.ADVERTISE, advertise_payload(self.c_pk, self.s_pk, sig))

    def _check_model(self, cid: int, sig: bytes) -> None:
        """``model_commitment``: the neighbour's signed digest must be this client's own."""
        if len(sig) != SIG_BYTES + MODEL_BLOCK_BYTES:
            raise ModelCommitmentMismatch(
                f"client {cid}'s keys reached client {self.cid} without a model commitment; the "
                "round is aborted."
            )
        digest = sig[SIG_BYTES : SIG_BYTES + DIGEST_BYTES]
        try:
            msg = model_message(self.cfg.round_index, cid, digest)
            crypto.verify(self.verify_keys[cid], sig[SIG_BYTES + DIGEST_BYTES :], msg)
        except (crypto.AuthenticationFailure, KeyError) as exc:
            raise ModelCommitmentMismatch(
                f"the model commitment of client {cid} shown to client {self.cid} does not carry "
                f"client {cid}'s signature (forged by the server); the round is aborted."
            ) from exc
        if digest != self.model_digest:
            raise ModelCommitmentMismatch(
                f"clients {min(cid, self.cid)} and {max(cid, self.cid)} received different "
                "models (their signed model commitments differ): the server broadcast "
                "inconsistent models, so the round is aborted."
            )

    # -- step 1 -----------------------------------------------------------------------------
    def _adopt_cohort(self, cohort: list[int]) -> None:
        """Active variant: check the announced U1 and draw the public graph from the beacon."""
        cfg = self.cfg
        if cohort != sorted(set(cohort)) or any(u not in cfg.graph for u in cohort):
            raise ProtocolViolation(
                f"the cohort announced to client {self.cid} repeats, misorders or names unknown "
                "clients."
            )
        if self.cid not in cohort:
            raise ProtocolViolation(f"the cohort announced to client {self.cid} omits it.")
        if len(cohort) < cfg.cohort_floor:
            raise ProtocolAbort(
                f"only {len(cohort)} clients advertised keys; the minimum cohort is "
                f"{cfg.cohort_floor}, so the round is aborted."
            )
        if self.beacon is None:
            raise ConfigError("the active-adversary variant needs a public beacon.")
        self.u1 = frozenset(cohort)
        self.view = graph_seed(cfg.session, self.beacon(cfg.round_index), cohort)
        self.cfg = cfg.with_public_graph(self.view)
        self.holders = self.cfg.holders(self.cid)

    def share_keys(self, message: bytes) -> bytes:
        active = self.cfg.active_adversary
        entries, cohort = read_keys_and_cohort(self._payload(message, Stage.KEYS), active)
        if active:
            self._adopt_cohort(cohort)
        cfg = self.cfg
        session = cfg.session if active else b""
        for cid, c_pk, s_pk, sig in entries:
            if cid not in self.holders:
                raise ProtocolViolation(
                    f"client {self.cid} received keys of client {cid}, which is not a neighbour."
                )
            if cid in self.keys:
                raise ProtocolViolation(f"client {self.cid} received keys of {cid} twice.")
            if c_pk == s_pk:
                raise ProtocolViolation(f"client {cid} advertised two identical public keys.")
            if cfg.bind_model:
                self._check_model(cid, sig)
                sig = sig[:SIG_BYTES]
            if cfg.signed:
                try:
                    msg = advertise_message(cfg.round_index, cid, c_pk, s_pk, session)
                    crypto.verify(self.verify_keys[cid], sig, msg)
                except (crypto.AuthenticationFailure, KeyError) as exc:
                    raise ProtocolViolation(
                        f"the advertised keys of client {cid} carry no valid signature."
                    ) from exc
            self.keys[cid] = (c_pk, s_pk)
        if self.keys.get(self.cid) != (self.c_pk, self.s_pk):
            raise ProtocolViolation(f"the server altered or omitted client {self.cid}'s own keys.")
        if active and set(self.keys) != self.holders & self.u1:
            odd = sorted(set(self.keys) ^ (self.holders & self.u1))[0]
            raise ProtocolViolation(
                f"the KEYS message to client {self.cid} omits or adds the keys of client {odd} "
                "against the announced cohort and graph."
            )
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
        c = cfg.chunks
        out: list[tuple[int, bytes]] = []
        commitments: list[tuple[int, bytes, bytes]] = []
        for row, v in enumerate(holders):
            salt = os.urandom(cfg.salt_bytes)
            if active:  # commit to both shares v holds; v reveals one with its salt later
                key_share = shamir.elements_to_bytes(shares[row][:c], cfg.prime)
                seed_share = shamir.elements_to_bytes(shares[row][c:], cfg.prime)
                commitments.append(
                    (
                        v,
                        share_commitment(session, self.cid, v, ShareKind.KEY, salt, key_share),
                        share_commitment(session, self.cid, v, ShareKind.SEED, salt, seed_share),
                    )
                )
            if v == self.cid:
                self.shares_held[v] = shares[row]
                self.salts_held[v] = salt
                continue
            key = self._pair_key(self.c_sk, self.c_pk, v, self.keys[v][0], _SHARE_LABEL)
            self.share_keys_with[v] = key  # symmetric: reused to decrypt v's share to us
            plain = (
                struct.pack(">II", self.cid, v)
                + shamir.elements_to_bytes(shares[row], cfg.prime)
                + salt
            )
            ad = crypto.associated_data(cfg.round_index, self.cid, v)
            out.append((v, crypto.encrypt(key, plain, ad, cfg.aead)))
        body = ciphertexts_payload(out)
        if active:
            body += commitments_payload(seed_commitment(session, self.cid, self.b), commitments)
        return self._send(Stage.SHARES, body)

    # -- step 2 -----------------------------------------------------------------------------
    def masked_input(self, message: bytes) -> bytes:
        cfg = self.cfg
        senders: set[int] = set()
        expected_len = 8 + 2 * cfg.share_bytes + cfg.salt_bytes
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
            if plain[:8] != struct.pack(">II", u, self.cid) or len(plain) != expected_len:
                raise ProtocolViolation(f"the share from client {u} names the wrong parties.")
            end = 8 + 2 * cfg.share_bytes
            try:
                self.shares_held[u] = shamir.bytes_to_elements(plain[8:end], cfg.prime)
            except ValueError as exc:
                raise ProtocolViolation(f"the share from client {u} is malformed.") from exc
            self.salts_held[u] = plain[end:]
            senders.add(u)
        self.u2 = senders | {self.cid}
        self._abort_unless(len(self.u2), "clients that shared keys")
        y = self.x.copy()  # (d,) words, arithmetic wraps mod 2^32 / 2^64
        prg.accumulate(y, self.b, +1, cfg.prg)
        for v in sorted(senders):
            pair_key = self._pair_key(self.s_sk, self.s_pk, v, self.keys[v][1], _MASK_LABEL)
            prg.accumulate(y, pair_key, +1 if self.cid > v else -1, cfg.prg)
        body = masked_payload(cfg.reduce(y))
        if cfg.active_adversary:  # whom the masks involve: the server checks they pair up
            body += ids_payload(sorted(senders))
        return self._send(Stage.MASKED, body)

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
        if len(u3) < cfg.cohort_floor:
            raise ProtocolAbort(
                f"only {len(u3)} clients sent masked inputs; the minimum cohort is "
                f"{cfg.cohort_floor}, so client {self.cid} will not help unmask their sum."
            )
        self.u3 = set(u3)
        if not cfg.signed:
            return None
        sig = self._sign(consistency_message(cfg.round_index, u3, self.view))
        return self._send(Stage.CONSISTENCY, sig)

    # -- step 4 -----------------------------------------------------------------------------
    def unmask(self, signatures: bytes | None = None) -> bytes:
        cfg = self.cfg
        if self.answered_unmask or not self.answered_survivors:
            raise ProtocolViolation(
                f"client {self.cid} answers one unmasking request per round, after the survivor "
                "list."
            )
        self.answered_unmask = True
        if cfg.signed:
            if signatures is None:
                raise ProtocolViolation(f"client {self.cid} got no consistency signatures.")
            msg = consistency_message(cfg.round_index, self.u3, self.view)
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
        if not survived.isdisjoint(dropped):  # explicit (not assert): survives python -O
            raise ProtocolViolation("a client's key and seed shares must never both leave.")
        c = cfg.chunks
        entries: list[tuple[int, ShareKind, bytes]] = []
        for w in sorted(self.u2):
            share = self.shares_held[w]
            salt = self.salts_held.get(w, b"") if cfg.active_adversary else b""
            if w in survived:
                opened = shamir.elements_to_bytes(share[c:], cfg.prime)
                entries.append((w, ShareKind.SEED, opened + salt))
            else:
                opened = shamir.elements_to_bytes(share[:c], cfg.prime)
                entries.append((w, ShareKind.KEY, opened + salt))
        return self._send(Stage.UNMASK, unmask_payload(entries))


class Server:
    """The aggregator's side; each step consumes the clients' messages and emits replies."""

    def __init__(
        self,
        config: ProtocolConfig,
        verify_keys: Mapping[int, bytes] | None = None,
        beacon: Callable[[int], bytes] | None = None,
    ):
        if config.active_adversary and (beacon is None or verify_keys is None):
            raise ConfigError("the active-adversary variant needs verify keys and a beacon.")
        self.cfg = config
        self.ids = frozenset(config.graph)
        self.verify_keys = dict(verify_keys or {})
        self.beacon = beacon
        self.keys: dict[int, tuple[bytes, bytes, bytes]] = {}
        self.acc = np.zeros(config.dim, dtype=config.word_dtype)  # (d,) running Σ y_u
        self.u1: frozenset[int] = frozenset()
        self.u2: frozenset[int] = frozenset()
        self.u3: frozenset[int] = frozenset()
        self.u4: frozenset[int] = frozenset()
        self.u5: frozenset[int] = frozenset()
        self.view = b""
        self.reconstructed: dict[int, ShareKind] = {}
        # active variant: what each client committed to and whom it masked with
        self.seed_commitments: dict[int, bytes] = {}
        self.share_commitments: dict[int, np.ndarray] = {}  # owner -> (holder, key, seed) records
        self.mask_peers: dict[int, frozenset[int]] = {}
        self.excluded: dict[int, tuple[int, ...]] = {}  # owner -> holders whose shares failed
        self.self_mask_seconds = 0.0  # expanding and removing the survivors' self-masks

    def _collect(
        self, messages: list[bytes], stage: Stage, allowed: frozenset[int]
    ) -> dict[int, memoryview]:
        """Check headers (and, active variant, signatures); return payloads as views (no copy)."""
        cfg = self.cfg
        out: dict[int, memoryview] = {}
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
            if h.round_index != cfg.round_index:
                raise ProtocolViolation(
                    f"client {h.sender} sent a message of round {h.round_index} during round "
                    f"{cfg.round_index} (stale or replayed)."
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
            if cfg.active_adversary:
                out[h.sender] = open_message(msg, cfg.session, self.verify_keys)[HEADER_BYTES:]
            else:
                out[h.sender] = memoryview(msg)[HEADER_BYTES:]
        return out

    def _require(self, count: int, what: str) -> None:
        if count < self.cfg.threshold:
            raise ProtocolAbort(
                f"only {count} clients {what}; the threshold is {self.cfg.threshold}, so the "
                "round is aborted."
            )
        if count < self.cfg.cohort_floor:
            raise ProtocolAbort(
                f"only {count} clients {what}; the minimum cohort is {self.cfg.cohort_floor}, "
                "so the round is aborted."
            )

    def _reply(self, stage: Stage, receiver: int, body: bytes) -> bytes:
        return pack(stage, self.cfg.round_index, SERVER, receiver, body)

    def advertise(self, messages: list[bytes]) -> list[bytes]:
        cfg = self.cfg
        session = cfg.session if cfg.active_adversary else b""
        for cid, body in self._collect(messages, Stage.ADVERTISE, self.ids).items():
            c_pk, s_pk, sig = read_advertise(bytes(body))
            if cfg.signed:
                try:
                    msg = advertise_message(cfg.round_index, cid, c_pk, s_pk, session)
                    crypto.verify(self.verify_keys[cid], sig[:SIG_BYTES], msg)
                except (crypto.AuthenticationFailure, KeyError) as exc:
                    raise ProtocolViolation(
                        f"client {cid}'s advertised keys carry no valid signature."
                    ) from exc
            self.keys[cid] = (c_pk, s_pk, sig)
        self.u1 = frozenset(self.keys)
        self._require(len(self.u1), "advertised keys")
        cohort = b""
        if cfg.active_adversary:  # keys are committed: now read the beacon and fix the graph
            if self.beacon is None:
                raise ConfigError("the active-adversary variant needs a public beacon.")
            self.view = graph_seed(cfg.session, self.beacon(cfg.round_index), self.u1)
            self.cfg = cfg = cfg.with_public_graph(self.view)
            cohort = ids_payload(sorted(self.u1))
        out = []
        built: dict[frozenset[int], bytes] = {}  # complete graph: one payload for everyone
        for v in sorted(self.u1):
            group = cfg.holders(v) & self.u1
            if group not in built:
                entries = [(w, *self.keys[w]) for w in sorted(group)]
                built[group] = keys_payload(entries) + cohort
            out.append(self._reply(Stage.KEYS, v, built[group]))
        return out

    def shares(self, messages: list[bytes]) -> list[bytes]:
        """Route every encrypted share to its receiver (vectorized over fixed-size entries)."""
        cfg = self.cfg
        got = self._collect(messages, Stage.SHARES, self.u1)
        ct_bytes = cfg.share_ciphertext_bytes
        senders, receivers, blobs = [], [], []
        for u, body in got.items():
            if cfg.active_adversary:
                cut = split_ciphertext_block(body, ct_bytes, "SHARES")
                seed_c, commitments = read_commitments(bytes(body[cut:]))
                body = body[:cut]
            rec = read_ciphertext_records(bytes(body), ct_bytes, "SHARES")
            peers = rec["peer"].astype(np.int64)
            if cfg.active_adversary:
                addressed = peers.tolist()
                self._check_addressed(u, addressed)
                if set(commitments["holder"].tolist()) != set(addressed) | {u}:
                    raise ProtocolViolation(
                        f"client {u}'s SHARES message commits to other holders than it shares with."
                    )
                self.seed_commitments[u] = seed_c
                self.share_commitments[u] = commitments
            senders.append(np.full(peers.size, u, dtype=np.int64))
            receivers.append(peers)
            blobs.append(rec["ct"])
        self.u2 = frozenset(got)
        self._require(len(self.u2), "shared their keys")
        sender = np.concatenate(senders)  # (E,)
        receiver = np.concatenate(receivers)  # (E,)
        blob = np.concatenate(blobs)  # (E,) fixed-size ciphertexts
        if not cfg.active_adversary:  # all senders' addressees checked at once
            self._check_all_addressed(sender, receiver)
        order = np.lexsort((sender, receiver))
        receiver = receiver[order]
        # one wire-format array for every forwarded share, sliced per receiver (no per-receiver
        # allocation or field copies)
        forwarded = np.empty(order.size, dtype=ciphertext_dtype(ct_bytes))
        forwarded["peer"], forwarded["length"], forwarded["ct"] = (
            sender[order],
            ct_bytes,
            blob[order],
        )
        u2 = np.asarray(sorted(self.u2), dtype=np.int64)
        starts = np.searchsorted(receiver, u2, "left").tolist()
        ends = np.searchsorted(receiver, u2, "right").tolist()
        return [
            self._reply(Stage.FORWARD, v, ciphertext_records_payload(forwarded[lo:hi]))
            for v, lo, hi in zip(u2.tolist(), starts, ends, strict=True)
        ]

    def _check_addressed(self, u: int, addressed: list[int]) -> None:
        """Client u's shares go to distinct neighbours with advertised keys."""
        allowed_set = self.cfg.graph[u] & self.u1
        if len(set(addressed)) != len(addressed) or not allowed_set.issuperset(addressed):
            bad = next((p for p in addressed if p not in allowed_set), addressed[0])
            raise ProtocolViolation(
                f"client {u} addressed a share to client {bad}, which is not one of its "
                "neighbours with advertised keys (or twice)."
            )

    def _check_all_addressed(self, sender: np.ndarray, receiver: np.ndarray) -> None:
        """:meth:`_check_addressed` for every ``(sender, receiver)`` share at once."""
        ids = np.asarray(sorted(self.ids), dtype=np.int64)  # (n,)
        n = ids.size
        spos = np.searchsorted(ids, sender)  # senders passed _collect: known ids
        rpos = np.minimum(np.searchsorted(ids, receiver), n - 1)
        known = ids[rpos] == receiver
        with_keys = np.isin(ids, np.asarray(sorted(self.u1), dtype=np.int64))  # (n,)
        neighbour = self._closed_adjacency(ids) & ~np.eye(n, dtype=bool)  # (n, n)
        ok = known & neighbour[spos, rpos] & with_keys[rpos]
        pair = spos * n + rpos
        _, first = np.unique(pair, return_index=True)
        once = np.zeros(pair.size, dtype=bool)
        once[first] = True
        bad = np.flatnonzero(~(ok & once))
        if bad.size:
            u = int(sender[bad[0]])
            self._check_addressed(u, receiver[sender == u].tolist())  # names the first culprit
            raise ProtocolViolation(f"client {u} addressed a share twice or to a stranger.")

    def masked(self, messages: list[bytes]) -> list[bytes]:
        """Sum the masked inputs as they are parsed: each payload is read in place (a numpy
        view of the received bytes, no copy) and added into the running sum."""
        cfg = self.cfg
        got = self._collect(messages, Stage.MASKED, self.u2)
        block = masked_bytes(cfg.dim, cfg.word_dtype)
        acc = self.acc
        for u, body in got.items():
            if cfg.active_adversary:
                peers = read_ids(bytes(body[block:]), "MASKED")
                self.mask_peers[u] = frozenset(peers)
                body = body[:block]
            np.add(acc, read_masked(body, cfg.dim, cfg.word_dtype), out=acc, casting="unsafe")
        self.u3 = frozenset(got)
        self._require(len(self.u3), "sent masked inputs")
        if cfg.active_adversary:
            self._check_mask_pairs()
        survivors = ids_payload(sorted(self.u3))
        return [self._reply(Stage.SURVIVORS, v, survivors) for v in sorted(self.u3)]

    def _check_mask_pairs(self) -> None:
        """Active variant: pairwise masks cancel only if every pair of survivors masked with
        each other; a share lost or added in a FORWARD message breaks that, and is caught here."""
        for u in sorted(self.u3):
            peers = self.mask_peers[u]
            stray = peers - (self.cfg.graph[u] & self.u2)
            if stray:
                raise ProtocolViolation(
                    f"client {u}'s MASKED message says it masked with client {min(stray)}, which "
                    "is not its neighbour among the clients that shared keys."
                )
            for v in sorted(peers & self.u3):
                if u not in self.mask_peers[v]:
                    raise ProtocolViolation(
                        f"client {u} masked with client {v} but not the other way round: a "
                        "FORWARD message lost or gained a share."
                    )

    def consistency(self, messages: list[bytes]) -> list[bytes]:
        cfg = self.cfg
        got = self._collect(messages, Stage.CONSISTENCY, self.u3)
        msg = consistency_message(cfg.round_index, self.u3, self.view)
        for cid, sig in got.items():
            try:
                crypto.verify(self.verify_keys[cid], bytes(sig), msg)
            except (crypto.AuthenticationFailure, KeyError) as exc:
                raise ProtocolViolation(
                    f"client {cid}'s consistency signature is invalid."
                ) from exc
        self.u4 = frozenset(got)
        self._require(len(self.u4), "signed the survivor list")
        body = signatures_payload([(cid, bytes(sig)) for cid, sig in sorted(got.items())])
        return [self._reply(Stage.SIGNATURES, v, body) for v in sorted(self.u4)]

    def _needs_key(self) -> set[int]:
        """Dropped clients whose pairwise masks are in some survivor's input."""
        dropped = self.u2 - self.u3
        if self.cfg.active_adversary:
            return {w for w in dropped if any(w in self.mask_peers[v] for v in self.u3)}
        return {w for w in dropped if self.cfg.graph[w] & self.u3}

    def _masked_with(self, w: int) -> list[int]:
        """Survivors whose input carries a pairwise mask with dropped client w."""
        if self.cfg.active_adversary:
            return sorted(v for v in self.u3 if w in self.mask_peers[v])
        return sorted(self.cfg.graph[w] & self.u3)

    def unmask(self, messages: list[bytes]) -> np.ndarray:
        """Reconstruct what is needed and return ``Σ_{u ∈ U3} x_u mod R`` as ``(d,)`` words."""
        cfg = self.cfg
        allowed = self.u4 if cfg.signed else self.u3
        got = self._collect(messages, Stage.UNMASK, allowed)
        self.u5 = frozenset(got)
        self._require(len(self.u5), "answered the unmasking request")
        # Every UNMASK message is a count and fixed-size records: check each one's framing,
        # then parse all records of all messages in one pass.
        record = 4 + 1 + cfg.share_bytes + cfg.salt_bytes
        senders, counts, sections = [], [], []
        for v, body in got.items():
            (count,) = struct.unpack(">I", body[:4]) if len(body) >= 4 else (-1,)
            if count < 0 or len(body) != 4 + count * record:
                raise ProtocolViolation("an UNMASK message is truncated or has trailing bytes.")
            senders.append(v)
            counts.append(count)
            sections.append(body[4:])
        joined = struct.pack(">I", sum(counts)) + b"".join(sections)
        all_owners, all_kinds, all_elems, all_salts = read_unmask_arrays(
            joined, cfg.chunks, cfg.prime, cfg.salt_bytes
        )  # (E,), (E,), (E, chunks), (E, salt bytes)
        holder_ids = np.repeat(np.asarray(senders, dtype=np.int64), counts)  # (E,)
        all_points = holder_ids + 1  # share points x = holder + 1
        self._check_unmask_entries(holder_ids, all_owners, all_kinds)
        order = np.lexsort((all_points, all_owners, all_kinds))  # by kind, owner, share point
        kinds_sorted = all_kinds[order]
        split = int(np.searchsorted(kinds_sorted, int(ShareKind.SEED)))
        shares = {
            kind: _ShareTable(all_owners, all_points, all_elems, all_salts, part)
            for kind, part in ((ShareKind.KEY, order[:split]), (ShareKind.SEED, order[split:]))
        }
        need_seed = set(self.u3)
        need_key = self._needs_key()
        # Never reconstruct both secrets of one client: explicit checks, not asserts, so that
        # they hold under python -O too.
        if not need_seed.isdisjoint(need_key):
            raise ProtocolViolation("the server would reconstruct both secrets of one client.")
        if any(
            self.reconstructed.get(w, k) != k
            for ws, k in ((need_seed, ShareKind.SEED), (need_key, ShareKind.KEY))
            for w in ws
        ):
            raise ProtocolViolation("the server would reconstruct both secrets of one client.")
        seeds = self._reconstruct(shares[ShareKind.SEED], need_seed, ShareKind.SEED)
        mask_keys = self._reconstruct(shares[ShareKind.KEY], need_key, ShareKind.KEY)
        for w in need_seed:
            self.reconstructed[w] = ShareKind.SEED
        for w in need_key:
            self.reconstructed[w] = ShareKind.KEY
        total = self.acc.copy()
        started = time.perf_counter()
        for w in sorted(need_seed):
            prg.accumulate(total, seeds[w], -1, cfg.prg)
        # the floor any server pays (benchmarks compare the whole server time with it)
        self.self_mask_seconds = time.perf_counter() - started
        for w in sorted(need_key):
            sk = crypto.agreement_key_from_bytes(mask_keys[w])
            w_pk = self.keys[w][1]
            if crypto.public_bytes(sk) != w_pk:
                raise ProtocolViolation(
                    f"the reconstructed masking key of client {w} does not match its advertised "
                    "public key (inconsistent shares)."
                )
            for v in self._masked_with(w):
                v_pk = self.keys[v][1]
                if cfg.active_adversary:
                    pair_key = crypto.agree_bound(
                        sk, (w, w_pk), (v, v_pk), _MASK_LABEL, cfg.round_index, cfg.session
                    )
                else:
                    pair_key = crypto.agree(sk, v_pk, _MASK_LABEL, cfg.round_index)
                # y_v carried Δ_vw · PRG(s_vw) with Δ_vw = +1 if v > w: take it out.
                prg.accumulate(total, pair_key, -1 if v > w else +1, cfg.prg)
        return cfg.reduce(total)

    def _check_unmask_entries(
        self, holders: np.ndarray, owners: np.ndarray, kinds: np.ndarray
    ) -> None:
        """All UNMASK entries at once: each names an owner in U2 that the sender can hold, at
        most once per sender, with the share kind the server needs (seed for U3, else key)."""
        ids = np.asarray(sorted(self.ids), dtype=np.int64)  # (n,) dense index of client ids
        n = ids.size
        pos = np.minimum(np.searchsorted(ids, owners), n - 1)
        known = ids[pos] == owners
        hpos = np.searchsorted(ids, holders)  # holders are senders: known ids
        in_u2 = np.isin(ids, np.asarray(sorted(self.u2), dtype=np.int64))
        in_u3 = np.isin(ids, np.asarray(sorted(self.u3), dtype=np.int64))
        ok = known & in_u2[pos] & self._closed_adjacency(ids)[hpos, pos]
        pair = hpos * n + pos
        _, first = np.unique(pair, return_index=True)
        once = np.zeros(pair.size, dtype=bool)
        once[first] = True
        bad = np.flatnonzero(~(ok & once))
        if bad.size:
            i = int(bad[0])
            raise ProtocolViolation(
                f"client {int(holders[i])} sent a share of client {int(owners[i])}, which it "
                "cannot hold (or twice)."
            )
        expected = np.where(in_u3[pos], int(ShareKind.SEED), int(ShareKind.KEY))
        wrong = np.flatnonzero(kinds != expected)
        if wrong.size:
            i = int(wrong[0])
            got_kind, want = ShareKind(int(kinds[i])), ShareKind(int(expected[i]))
            raise ProtocolViolation(
                f"client {int(holders[i])} sent a {got_kind.name.lower()} share of client "
                f"{int(owners[i])}, but the server needs its {want.name.lower()} share."
            )

    def _closed_adjacency(self, ids: np.ndarray) -> np.ndarray:
        """(n, n) booleans: row holder, column owner, True if the holder may hold its shares."""
        n = ids.size
        if self.cfg.is_complete():
            return np.ones((n, n), dtype=bool)
        index = {int(u): i for i, u in enumerate(ids)}
        adj = np.eye(n, dtype=bool)
        for u, nb in self.cfg.graph.items():
            adj[index[u], [index[v] for v in nb]] = True
        return adj

    def _opens(self, owner: int, kind: ShareKind, secret: bytes) -> bool:
        """Active variant: does ``secret`` match what ``owner`` committed to?"""
        if kind == ShareKind.SEED:
            return seed_commitment(self.cfg.session, owner, secret) == self.seed_commitments.get(
                owner
            )
        try:
            sk = crypto.agreement_key_from_bytes(secret)
        except ValueError:
            return False
        return crypto.public_bytes(sk) == self.keys[owner][1]

    def _reconstruct(
        self, table: _ShareTable, owners: set[int], kind: ShareKind
    ) -> dict[int, bytes]:
        """Lagrange-combine the first t shares of every owner (batched by share points); in the
        active variant a result that does not open the owner's commitment is redone robustly."""
        cfg = self.cfg
        what = "self-mask seed" if kind == ShareKind.SEED else "masking key"
        t = cfg.threshold
        wanted = np.asarray(sorted(owners), dtype=np.int64)  # (b,)
        if wanted.size == 0:
            return {}
        # the first t shares of every owner (sorted by share point), located all at once
        safe = np.zeros(wanted.size, dtype=np.int64)
        counts = np.zeros(wanted.size, dtype=np.int64)
        if table.keys.size:
            found = np.searchsorted(table.keys, wanted)  # (b,)
            safe = np.minimum(found, table.keys.size - 1)
            present = (found < table.keys.size) & (table.keys[safe] == wanted)
            counts = np.where(present, table.counts[safe], 0)
        short = np.flatnonzero(counts < t)
        if short.size:
            w = int(wanted[short[0]])
            raise ProtocolAbort(
                f"only {int(counts[short[0]])} holders of client {w}'s {what} shares answered; "
                f"the threshold is {t}, so the round is aborted."
            )
        index = table.starts[safe][:, None] + np.arange(t)  # (b, t)
        xs_all = table.points[index]  # (b, t)
        batch = table.elems[index]  # (b, t, chunks)
        items = [(int(w), batch[i]) for i, w in enumerate(wanted.tolist())]
        if bool((xs_all == xs_all[0]).all()):  # one set of holders (complete graph): one solve
            solved = [(items, shamir.combine(batch, xs_all[0], cfg.prime))]
        elif cfg.prime == shamir.MERSENNE_31:  # SecAgg+: every owner its own points, batched
            solved = [(items, shamir.combine_many(batch, xs_all, cfg.prime))]
        else:
            _, group_of = np.unique(xs_all, axis=0, return_inverse=True)
            solved = []
            for g in np.unique(group_of):
                rows = np.flatnonzero(group_of == g)
                solved.append(
                    (
                        [items[i] for i in rows],
                        shamir.combine(batch[rows], xs_all[rows[0]], cfg.prime),
                    )
                )
        out: dict[int, bytes] = {}
        for items, secrets in solved:
            for (w, _), sec in zip(items, secrets, strict=True):
                try:
                    secret: bytes | None = shamir.field_to_secret(sec, SECRET_BYTES, cfg.prime)
                except ValueError:
                    secret = None
                if cfg.active_adversary and (secret is None or not self._opens(w, kind, secret)):
                    secret = self._robust(table, w, kind, what)
                if secret is None:
                    raise ProtocolViolation(f"the shares of client {w}'s {what} are inconsistent.")
                out[w] = secret
        return out

    def _robust(self, table: _ShareTable, w: int, kind: ShareKind, what: str) -> bytes:
        """Check every share of ``w`` against its commitment, drop the wrong ones, and
        reconstruct from t verified shares (Bonawitz et al. 2017, Sec. 6: robust
        reconstruction); a :class:`ProtocolViolation` names the holders if too few remain."""
        cfg = self.cfg
        points, elems, salts = table.of(w)
        records = self.share_commitments.get(w)
        committed: dict[int, tuple[bytes, bytes]] = {}
        if records is not None:
            for r in records:
                committed[int(r["holder"])] = (bytes(r["key"]), bytes(r["seed"]))
        good: list[int] = []
        bad: list[int] = []
        for i, x in enumerate(points.tolist()):
            holder = int(x) - 1
            opened = shamir.elements_to_bytes(elems[i], cfg.prime)
            digest = share_commitment(cfg.session, w, holder, kind, salts[i].tobytes(), opened)
            expected = committed.get(holder, (b"", b""))[int(kind)]
            (good if digest == expected else bad).append(i)
        bad_holders = tuple(int(points[i]) - 1 for i in bad)
        self.excluded[w] = bad_holders
        t = cfg.threshold
        if len(good) < t:
            raise ProtocolViolation(
                f"UNMASK: the shares of client {w}'s {what} from clients "
                f"{', '.join(map(str, bad_holders))} do not match client {w}'s commitments; only "
                f"{len(good)} verified shares remain and the threshold is {t}."
            )
        pick = np.asarray(good[:t])
        sec = shamir.combine(elems[pick][None], points[pick], cfg.prime)[0]
        try:
            secret = shamir.field_to_secret(sec, SECRET_BYTES, cfg.prime)
        except ValueError:
            secret = b""
        if not self._opens(w, kind, secret):
            raise ProtocolViolation(
                f"client {w}'s {what} rebuilt from {t} verified shares does not open its "
                f"commitment: client {w} shared inconsistently."
            )
        return secret


class _ShareTable:
    """Shares of one kind received in the unmasking step, grouped by owner (vectorized)."""

    def __init__(
        self,
        owners: np.ndarray,
        points: np.ndarray,
        elems: np.ndarray,
        salts: np.ndarray,
        order: np.ndarray,
    ) -> None:
        """``order``: the indices of this kind's entries, sorted by owner, then share point."""
        self.owners, self.points = owners[order], points[order]
        self.elems, self.salts = elems[order], salts[order]
        self.keys, self.starts, self.counts = np.unique(
            self.owners, return_index=True, return_counts=True
        )

    def of(self, owner: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = int(np.searchsorted(self.keys, owner))
        if i >= self.keys.size or self.keys[i] != owner:
            return np.zeros(0, dtype=np.int64), self.elems[:0], self.salts[:0]
        lo, n = int(self.starts[i]), int(self.counts[i])
        return self.points[lo : lo + n], self.elems[lo : lo + n], self.salts[lo : lo + n]


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
    excluded: Mapping[int, tuple[int, ...]] = field(default_factory=dict)  # owner -> bad holders
    server_self_mask_seconds: float = 0.0  # part of the server's time: PRG(b_u) of survivors

    @property
    def survivors(self) -> tuple[int, ...]:
        """Clients whose inputs are in the sum (U3)."""
        return self.stage_sets["masked"]


Intercept = Callable[[Stage, list[bytes]], list[bytes]]


@contextmanager
def _naming(stage: Stage | None) -> Iterator[None]:
    """Prefix a :class:`ProtocolViolation` with the message being processed when it arose."""
    try:
        yield
    except ProtocolViolation as exc:
        if stage is None or str(exc).startswith(f"{stage.name} message"):
            raise
        raise ProtocolViolation(f"{stage.name} message rejected: {exc}") from exc


def run_protocol(
    config: ProtocolConfig,
    inputs: Mapping[int, np.ndarray],
    drop_points: Mapping[int, DropPoint | int] | None = None,
    intercept: Intercept | None = None,
    client_seconds: Mapping[int, float] | None = None,
    identities: Mapping[int, Ed25519PrivateKey] | None = None,
    beacon: Callable[[int], bytes] | None = None,
    model_digests: Mapping[int, bytes] | None = None,
) -> ProtocolResult:
    """Run one round with every party in this process, exchanging serialized messages.

    ``inputs`` maps client id → ``(d,)`` residues in Z_R. ``drop_points`` says where a client
    goes silent. ``intercept(stage, messages)`` sees (and may alter, drop, duplicate or inject)
    every batch of messages on the wire — tests use it to play the network adversary.
    ``client_seconds`` adds time a client spent before the protocol (its encoding).
    ``identities`` are the clients' long-term Ed25519 keys (a PKI; fresh ones if omitted — pass
    the same ones to several rounds to replay messages across rounds); ``beacon`` is the public
    randomness of the active variant (a fresh :class:`PublicBeacon` if omitted);
    ``model_digests`` the SHA-256 of the model each client received (``bind_model``).

    A :class:`ProtocolViolation` names the message being processed when it was detected.
    """
    ids = tuple(sorted(config.graph))
    if set(inputs) != set(ids):
        unknown = sorted(set(inputs) ^ set(ids))[0]
        raise ProtocolViolation(f"client {unknown} is not registered in this round's graph.")
    drops = {u: DropPoint(int((drop_points or {}).get(u, 0))) for u in ids}
    signing: dict[int, Ed25519PrivateKey] = {}
    verify_keys: dict[int, bytes] = {}
    if config.signed:  # long-term identities from a PKI: set up outside the round
        for u in ids:
            signing[u] = (identities or {}).get(u) or crypto.new_signing_key()
            verify_keys[u] = crypto.public_bytes(signing[u])
    public = beacon if beacon is not None else (PublicBeacon() if config.active_adversary else None)
    costs = {u: PartyCost(seconds=float((client_seconds or {}).get(u, 0.0))) for u in ids}
    server_cost = PartyCost()
    digests = model_digests or {}
    clients = {
        u: Client(
            u,
            config,
            inputs[u],
            signing.get(u),
            verify_keys if signing else None,
            public,
            digests.get(u),
        )
        for u in ids
    }
    server = Server(config, verify_keys, public)
    wire: Intercept = intercept if intercept is not None else (lambda _s, m: m)

    def uplink(
        stage: Stage,
        step: Callable[[Client, bytes], bytes | None],
        inbox: Mapping[int, bytes],
        alive: set[int],
        reading: Stage | None = None,
    ) -> list[bytes]:
        out: list[bytes] = []
        for u in sorted(alive & set(inbox)):
            t0 = time.perf_counter()
            with _naming(reading):
                msg = step(clients[u], inbox[u])
            costs[u].seconds += time.perf_counter() - t0
            if msg is not None:
                costs[u].bytes_sent += len(msg)
                out.append(msg)
        return wire(stage, out)

    def serve(
        stage: Stage, step: Callable[[list[bytes]], list[bytes]], msgs: list[bytes], reading: Stage
    ) -> dict[int, bytes]:
        server_cost.bytes_received += sum(len(m) for m in msgs)
        t0 = time.perf_counter()
        with _naming(reading):
            replies = step(msgs)
        server_cost.seconds += time.perf_counter() - t0
        server_cost.bytes_sent += sum(len(m) for m in replies)
        inbox: dict[int, bytes] = {}
        for m in wire(stage, replies):
            with _naming(stage):
                h = peek(m)
            if h.receiver in inbox:
                raise ProtocolViolation(
                    f"client {h.receiver} received two {h.stage.name} messages (replayed)."
                )
            if h.receiver not in costs:
                raise ProtocolViolation(
                    f"a {h.stage.name} message is addressed to client {h.receiver}, who is not "
                    "in this round."
                )
            costs[h.receiver].bytes_received += len(m)
            inbox[h.receiver] = m
        return inbox

    alive = set(ids)
    first = uplink(Stage.ADVERTISE, lambda c, _m: c.advertise(), {u: b"" for u in ids}, alive)
    inbox = serve(Stage.KEYS, server.advertise, first, Stage.ADVERTISE)
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_SHARES}
    shared = uplink(Stage.SHARES, Client.share_keys, inbox, alive, Stage.KEYS)
    inbox = serve(Stage.FORWARD, server.shares, shared, Stage.SHARES)
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_MASKED}
    masked = uplink(Stage.MASKED, Client.masked_input, inbox, alive, Stage.FORWARD)
    inbox = serve(Stage.SURVIVORS, server.masked, masked, Stage.MASKED)
    alive -= {u for u in ids if drops[u] == DropPoint.BEFORE_UNMASK}
    signed = uplink(Stage.CONSISTENCY, Client.receive_survivors, inbox, alive, Stage.SURVIVORS)
    if config.signed:
        inbox = serve(Stage.SIGNATURES, server.consistency, signed, Stage.CONSISTENCY)
        unmask_msgs = uplink(Stage.UNMASK, Client.unmask, inbox, alive, Stage.SIGNATURES)
    else:
        unmask_msgs = uplink(
            Stage.UNMASK, lambda c, _m: c.unmask(None), {u: b"" for u in inbox}, alive
        )
    server_cost.bytes_received += sum(len(m) for m in unmask_msgs)
    t0 = time.perf_counter()
    with _naming(Stage.UNMASK):
        total = server.unmask(unmask_msgs)
    server_cost.seconds += time.perf_counter() - t0
    sets = {
        "advertised": tuple(sorted(server.u1)),
        "shared": tuple(sorted(server.u2)),
        "masked": tuple(sorted(server.u3)),
        "signed": tuple(sorted(server.u4)),
        "unmasked": tuple(sorted(server.u5)),
    }
    return ProtocolResult(
        total,
        sets,
        costs,
        server_cost,
        dict(server.reconstructed),
        dict(server.excluded),
        server.self_mask_seconds,
    )


__all__ = [
    "Client",
    "DropPoint",
    "PartyCost",
    "ProtocolAbort",
    "ProtocolConfig",
    "ProtocolResult",
    "ProtocolViolation",
    "PublicBeacon",
    "SecAggError",
    "Server",
    "run_protocol",
]
