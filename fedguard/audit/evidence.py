"""What holds about a run folder, in one line: seal, cross-checks, signature, verify.

``audit``, ``report`` and ``show`` call :func:`gather_evidence` before anything else and print
:meth:`Evidence.line` first. A broken seal (the ledger's SHA-256 chain) or a failed cross-check is an
error (exit 2, one sentence naming the field); so is a signature that no longer matches the
files. ``verify`` is never run implicitly (it retrains the run): the line says "not run".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedguard.audit.ledger_checks import CrossCheckResult, cross_check
from fedguard.audit.replay import VerifyResult
from fedguard.audit.signing import SignatureStatus, check_signature
from fedguard.errors import UserError
from fedguard.storage.run_dir import RunDirectory


class SignatureMismatchError(UserError):
    """A run's signature does not match its files (exit status 2)."""


@dataclass(frozen=True)
class Evidence:
    seal: str  # "ok" (the ledger's SHA-256 chain verified) or "absent" (no ledger yet)
    cross_checks: CrossCheckResult
    signature: SignatureStatus
    verify: VerifyResult | None = None

    def line(self) -> str:
        seal = (
            "seal ok (SHA-256 chain: accidental corruption only)"
            if self.seal == "ok"
            else "seal absent (no ledger)"
        )
        verify = self.verify.line() if self.verify is not None else "verify not run"
        return f"evidence: {seal} · {self.cross_checks.line()} · {self.signature.line()} · {verify}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line(),
            "seal": self.seal,
            "cross_checks": self.cross_checks.to_dict(),
            "signature": self.signature.to_dict(),
            "verify": self.verify.to_dict() if self.verify is not None else None,
        }


def gather_evidence(run: RunDirectory, strict: bool = True) -> Evidence:
    """Seal, cross-checks and signature of ``run``. With ``strict`` (the default) a failed
    cross-check or an invalid signature raises :class:`UserError` with its sentence."""
    has_ledger = run.has_ledger()
    checks = cross_check(run)  # reading the ledger verifies its seal (LedgerError otherwise)
    signature = check_signature(run.path)
    if strict:
        checks.raise_for_failure()
        if signature.state == "invalid":
            raise SignatureMismatchError(signature.detail)
    return Evidence("ok" if has_ledger else "absent", checks, signature)


__all__ = ["Evidence", "SignatureMismatchError", "gather_evidence"]
