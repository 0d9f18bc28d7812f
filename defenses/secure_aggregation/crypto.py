"""Cryptographic primitives of the protocol, all from the ``cryptography`` package.

* key agreement: X25519 (RFC 7748); the raw shared secret is never used directly but fed to
* key derivation: HKDF-SHA256 (RFC 5869) with a label naming the purpose and the round, giving
  one key for share encryption and an independent one for the pairwise mask PRG;
* authenticated encryption of shares: AES-256-GCM or ChaCha20-Poly1305 with a fresh random
  96-bit nonce (prepended to the ciphertext) and associated data = (round, sender, receiver), so a
  ciphertext moved to another round or another pair of parties fails authentication;
* signatures (consistency round, key advertisement; in the active-adversary variant every
  client → server message): Ed25519 (RFC 8032).

The active-adversary variant derives pairwise keys with :func:`agree_bound`: HKDF with a salt
naming the session (round and the commitment to the broadcast model) and an info field binding
both parties' identities and both public keys (in a canonical order, so both ends agree), as
key-derivation practice asks (Krawczyk 2010, Sec. 3.1 and 7).

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017 (KA, AE and SIG primitives of the protocol).
.. [2] H. Krawczyk, P. Eronen, "HMAC-based Extract-and-Expand Key Derivation Function (HKDF)",
   RFC 5869, 2010.
.. [3] H. Krawczyk, "Cryptographic Extraction and Key Derivation: The HKDF Scheme", CRYPTO
   2010.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

AEAD_ALGORITHMS = ("aes_gcm", "chacha20_poly1305")
NONCE_BYTES = 12
KEY_BYTES = 32
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NO_ENC = serialization.NoEncryption()


class AuthenticationFailure(Exception):
    """A ciphertext or signature did not verify (the caller turns it into a protocol error)."""


def new_agreement_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(_RAW, _RAW_PUB)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(_RAW, _RAW_PRIV, _NO_ENC)


def agreement_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def agree(private: X25519PrivateKey, peer_public: bytes, label: bytes, round_index: int) -> bytes:
    """32-byte key = HKDF-SHA256(X25519(private, peer), info = label ‖ round)."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # malformed or low-order public key
        raise AuthenticationFailure("invalid X25519 public key") from exc
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=b"fedguard/secagg/" + label + struct.pack(">Q", round_index),
    )
    return hkdf.derive(shared)


def session_salt(round_index: int, model_commitment: bytes) -> bytes:
    """32-byte HKDF salt of one round: SHA-256 of the round and the broadcast-model commitment
    (empty until the broadcast stage provides one), so keys of different sessions never meet."""
    h = hashlib.sha256(b"fedguard/secagg/v2/session")
    h.update(struct.pack(">QI", round_index, len(model_commitment)) + model_commitment)
    return h.digest()


def agree_bound(
    private: X25519PrivateKey,
    own: tuple[int, bytes],
    peer: tuple[int, bytes],
    label: bytes,
    round_index: int,
    salt: bytes,
) -> bytes:
    """32-byte key = HKDF-SHA256(X25519(private, peer), salt, info = label ‖ round ‖ both
    (id, public key) pairs in increasing id order). ``own`` / ``peer`` are (id, public key)."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer[1]))
    except ValueError as exc:  # malformed or low-order public key
        raise AuthenticationFailure("invalid X25519 public key") from exc
    (a_id, a_pk), (b_id, b_pk) = sorted((own, peer))
    info = (
        b"fedguard/secagg/v2/"
        + label
        + struct.pack(">QI", round_index, a_id)
        + a_pk
        + struct.pack(">I", b_id)
        + b_pk
    )
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(shared)


def associated_data(round_index: int, sender: int, receiver: int) -> bytes:
    return struct.pack(">QII", round_index, sender, receiver)


def _aead(key: bytes, algorithm: str) -> AESGCM | ChaCha20Poly1305:
    if algorithm == "aes_gcm":
        return AESGCM(key)
    if algorithm == "chacha20_poly1305":
        return ChaCha20Poly1305(key)
    raise ValueError(f"aead must be one of {', '.join(AEAD_ALGORITHMS)}; got {algorithm!r}.")


def encrypt(key: bytes, plaintext: bytes, ad: bytes, algorithm: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(key, algorithm).encrypt(nonce, plaintext, ad)


def decrypt(key: bytes, ciphertext: bytes, ad: bytes, algorithm: str) -> bytes:
    if len(ciphertext) < NONCE_BYTES + 16:
        raise AuthenticationFailure("ciphertext too short")
    try:
        return _aead(key, algorithm).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], ad)
    except InvalidTag as exc:
        raise AuthenticationFailure("ciphertext failed authentication") from exc


def new_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public: bytes, signature: bytes, message: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise AuthenticationFailure("signature failed verification") from exc
