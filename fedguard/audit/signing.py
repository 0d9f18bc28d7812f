"""Ed25519 signatures over a manifest of a run's files: who produced this run folder.

``fedguard keys generate`` writes a per-user key pair to ``$FEDGUARD_KEY_DIR`` (default
``~/.config/fedguard``), private key owner-only (0600, directory 0700), never inside a run
folder. ``fedguard sign RUN`` writes ``RUN/signature.json``: the SHA-256 of every file of the run
(except the files read-only commands write later: reports, the audit plot, empirical-audit
outputs, and the signature itself), the public key, and an Ed25519 signature over both.

Verifying recomputes the manifest: a file changed, added or removed after signing makes the
signature invalid. A valid signature *attributes* the folder to the holder of a key (compare its
fingerprint with the one the author published); it proves nothing about the run's honesty —
its author may have signed a forged ledger. ``fedguard verify`` is the evidence of honesty.

References
----------
Bernstein, Duif, Lange, Schwabe, Yang. "High-speed high-security signatures." Journal of
Cryptographic Engineering, 2012 (Ed25519). RFC 8032.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fedguard.errors import UserError
from fedguard.storage import atomic

SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "fedguard-run-signature"
SIGNATURE_VERSION = 1
PRIVATE_KEY_FILE = "signing_key.pem"
PUBLIC_KEY_FILE = "signing_key.pub"
#: written into a run folder by read-only commands after a run ends: not part of what is signed
UNSIGNED = frozenset(
    {SIGNATURE_FILE, "report.html", "report.pdf", "privacy_epsilon.png", "audit.json"}
)
UNSIGNED_DIRS = frozenset({"audit"})

State = Literal["absent", "valid", "invalid"]


@dataclass(frozen=True)
class SignatureStatus:
    """``absent`` / ``valid`` / ``invalid``, a sentence, the signer's key fingerprint, and
    whether that key is the one in this user's key directory."""

    state: State
    detail: str
    fingerprint: str | None = None
    own_key: bool = False

    def line(self) -> str:
        if self.state == "absent":
            return "signature absent"
        if self.state == "invalid":
            return "signature INVALID"
        whose = ", your key" if self.own_key else ""
        return f"signature valid (key {self.fingerprint}{whose})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def key_dir() -> Path:
    """``$FEDGUARD_KEY_DIR``, else ``~/.config/fedguard``."""
    env = os.environ.get("FEDGUARD_KEY_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "fedguard"


def fingerprint(public_raw: bytes) -> str:
    """First 16 bytes of the SHA-256 of the raw public key, as colon-separated hex pairs."""
    digest = hashlib.sha256(public_raw).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def generate_key(directory: Path | None = None, force: bool = False) -> tuple[Path, str]:
    """A new Ed25519 key pair in ``directory`` (default :func:`key_dir`): its path and fingerprint.

    Refuses to replace an existing key unless ``force`` (a lost key cannot sign again as you).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = directory or key_dir()
    private_path = folder / PRIVATE_KEY_FILE
    if private_path.exists() and not force:
        raise UserError(
            f"{private_path} already holds a signing key; pass --force to replace it (runs it "
            "signed will then no longer match your key)."
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    atomic.write_bytes(private_path, pem, mode=0o600)
    atomic.write_text(folder / PUBLIC_KEY_FILE, base64.b64encode(raw).decode() + "\n", mode=0o644)
    return private_path, fingerprint(raw)


def _load_private(directory: Path | None = None) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = (directory or key_dir()) / PRIVATE_KEY_FILE
    if not path.is_file():
        raise UserError(f"no signing key at {path}; create one with 'fedguard keys generate'.")
    if path.stat().st_mode & 0o077:
        raise UserError(
            f"{path} is readable by other users; restrict it with 'chmod 600 {path}' first."
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path} is not a readable Ed25519 private key ({err}).") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 private key.")
    return key


def own_public_key(directory: Path | None = None) -> bytes | None:
    """This user's raw public key, or None if there is none."""
    path = (directory or key_dir()) / PUBLIC_KEY_FILE
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError):
        return None


def manifest(run: Path) -> dict[str, str]:
    """``{relative path: SHA-256}`` of every regular file of ``run`` that is signed."""
    out: dict[str, str] = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if rel.parts[0] in UNSIGNED_DIRS or (len(rel.parts) == 1 and rel.name in UNSIGNED):
            continue
        if path.is_symlink() or not path.is_file() or rel.name.endswith(".tmp"):
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _payload(public_raw: bytes, files: dict[str, str]) -> bytes:
    body = {
        "format": SIGNATURE_FORMAT,
        "version": SIGNATURE_VERSION,
        "public_key": base64.b64encode(public_raw).decode(),
        "files": files,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_run(run: Path, directory: Path | None = None) -> tuple[Path, str, int]:
    """Write ``run/signature.json``: its path, the key fingerprint and the number of files."""
    from cryptography.hazmat.primitives import serialization

    if not (run / "spec.yaml").is_file():
        raise UserError(f"{run} is not a fedguard run directory (no spec.yaml).")
    key = _load_private(directory)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    files = manifest(run)
    signature = key.sign(_payload(raw, files))
    document = {
        "format": SIGNATURE_FORMAT,
        "version": SIGNATURE_VERSION,
        "algorithm": "ed25519",
        "public_key": base64.b64encode(raw).decode(),
        "fingerprint": fingerprint(raw),
        "files": files,
        "signature": base64.b64encode(signature).decode(),
    }
    target = run / SIGNATURE_FILE
    atomic.write_text(target, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return target, fingerprint(raw), len(files)


def check_signature(run: Path, directory: Path | None = None) -> SignatureStatus:
    """Whether ``run`` carries a signature and whether it matches the files as they are now."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = run / SIGNATURE_FILE
    if not path.is_file():
        return SignatureStatus("absent", f"{run} carries no {SIGNATURE_FILE}.")
    try:
        doc = json.loads(path.read_text())
        raw = base64.b64decode(doc["public_key"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
        files = doc["files"]
        if doc.get("format") != SIGNATURE_FORMAT or not isinstance(files, dict):
            raise ValueError("not a fedguard run signature")
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return SignatureStatus("invalid", f"{path} is unreadable or malformed ({err}).")
    print_ = fingerprint(raw)
    own = own_public_key(directory) == raw
    try:
        public.verify(signature, _payload(raw, files))
    except InvalidSignature:
        return SignatureStatus(
            "invalid", f"{path}: the signature does not match its manifest.", print_, own
        )
    now = manifest(run)
    for name in sorted(set(files) | set(now)):
        if name not in now:
            why = f"{name} was removed after the run was signed"
        elif name not in files:
            why = f"{name} was added after the run was signed"
        elif files[name] != now[name]:
            why = f"{name} was modified after the run was signed"
        else:
            continue
        return SignatureStatus("invalid", f"signature of {run}: {why}.", print_, own)
    return SignatureStatus(
        "valid",
        f"{len(files)} files signed by key {print_}{' (yours)' if own else ''}.",
        print_,
        own,
    )


__all__ = [
    "SIGNATURE_FILE",
    "SignatureStatus",
    "check_signature",
    "fingerprint",
    "generate_key",
    "key_dir",
    "manifest",
    "own_public_key",
    "sign_run",
]
