"""What the active-adversary variant signs, commits to and binds (Bonawitz et al. 2017, Sec. 6).

* **Signed messages.** Every client → server message ends with an Ed25519 signature over the
  session salt (round and broadcast-model commitment) and the SHA-256 of the header and payload,
  so a flipped bit, a truncation, a body moved under another header (round, stage, sender,
  receiver) or a previous round's message replayed is rejected by the server before parsing.
* **Commitments.** A client commits to its self-mask seed ``b_u`` (SHA-256 of the session, the
  owner and ``b_u``, which has 256 bits of entropy) and to every Shamir share it hands out
  (SHA-256 of the session, owner, holder, kind, a fresh 16-byte salt and the share). Holders
  reveal the salt with the share when unmasking, so the server identifies a wrong share and
  reconstructs from the remaining ones (robust reconstruction).
* **Bound views.** The consistency signature covers the survivor set, the cohort U1 and the
  graph seed, so clients that saw different cohorts, graphs or survivor sets cannot unmask
  together.

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017 (Sec. 6, active adversaries; signatures and consistency check).
.. [2] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
   Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020 (graph from public randomness).
.. [3] T. P. Pedersen, "Non-Interactive and Information-Theoretic Secure Verifiable Secret
   Sharing", CRYPTO 1991 (commitments that let holders' shares be checked; here hash-based).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from defenses.secure_aggregation import crypto
from defenses.secure_aggregation.errors import ProtocolViolation
from defenses.secure_aggregation.messages import HEADER_BYTES, SIG_BYTES, ShareKind, peek


def _signed_digest(session: bytes, message: bytes | memoryview) -> bytes:
    h = hashlib.sha256(b"fedguard/secagg/v2/message")
    h.update(session)
    h.update(message)  # header (stage, round, sender, receiver) and payload
    return h.digest()


def sign_message(key: Ed25519PrivateKey, session: bytes, message: bytes) -> bytes:
    """``message`` with its Ed25519 signature appended."""
    return message + crypto.sign(key, _signed_digest(session, message))


def open_message(
    message: bytes, session: bytes, verify_keys: dict[int, bytes] | None
) -> memoryview:
    """Verify the trailing signature of a client message; return header ‖ payload (a view)."""
    h = peek(message)
    view = memoryview(message)
    if len(message) < HEADER_BYTES + SIG_BYTES:
        raise ProtocolViolation(f"client {h.sender}'s {h.stage.name} message has no signature.")
    body, sig = view[:-SIG_BYTES], bytes(view[-SIG_BYTES:])
    key = (verify_keys or {}).get(h.sender)
    try:
        if key is None:
            raise crypto.AuthenticationFailure("unknown signer")
        crypto.verify(key, sig, _signed_digest(session, body))
    except crypto.AuthenticationFailure as exc:
        raise ProtocolViolation(
            f"the {h.stage.name} message claiming to come from client {h.sender} (round "
            f"{h.round_index}) fails its signature: tampered, truncated, replayed or forged."
        ) from exc
    return body


def seed_commitment(session: bytes, owner: int, seed: bytes) -> bytes:
    return hashlib.sha256(
        b"fedguard/secagg/v2/seed" + session + struct.pack(">I", owner) + seed
    ).digest()


def share_commitment(
    session: bytes, owner: int, holder: int, kind: ShareKind, salt: bytes, share: bytes
) -> bytes:
    head = b"fedguard/secagg/v2/share" + session + struct.pack(">IIB", owner, holder, int(kind))
    return hashlib.sha256(head + salt + share).digest()


def graph_seed(session: bytes, beacon: bytes, cohort: Iterable[int]) -> bytes:
    """Seed of the round's public graph: the beacon (read after keys are committed) and U1."""
    ids = np.asarray(sorted(cohort), dtype=">u4").tobytes()
    return hashlib.sha256(b"fedguard/secagg/v2/graph" + session + beacon + ids).digest()


def consistency_message(round_index: int, survivors: Iterable[int], view: bytes = b"") -> bytes:
    """What a client signs in the consistency round: the survivor set U3 and (active variant)
    its view of the session (the graph seed, which hashes U1, the beacon and the session)."""
    ids = np.asarray(sorted(survivors), dtype=">u4").tobytes()
    return b"fedguard/secagg/consistency" + struct.pack(">Q", round_index) + view + ids


def advertise_message(
    round_index: int, cid: int, c_pk: bytes, s_pk: bytes, session: bytes = b""
) -> bytes:
    """What a client signs about its key advertisement (and, active variant, the session)."""
    return (
        b"fedguard/secagg/advertise" + struct.pack(">QI", round_index, cid) + c_pk + s_pk + session
    )


def model_message(round_index: int, cid: int, digest: bytes) -> bytes:
    """What a client signs about the model it received (``model_commitment``): the round, its
    id and the SHA-256 of the broadcast parameters."""
    return b"fedguard/secagg/model" + struct.pack(">QI", round_index, cid) + digest
