"""Errors raised by the secure-aggregation protocol.

All of them are :class:`fedguard.errors.UserError` subclasses carrying one sentence, so the CLI
prints the reason without a traceback and a matrix records the cell as failed with that reason.
"""

from __future__ import annotations

from fedguard.errors import RoundAborted, UserError


class SecAggError(UserError):
    """Base class: the secure-aggregation round was aborted; nothing of it is used."""


class ProtocolAbort(SecAggError, RoundAborted):
    """Too few parties survived a protocol step for the threshold to be met (the round loop
    records the abort and leaves the model unchanged for that round)."""


class ModelCommitmentMismatch(ProtocolAbort):
    """Clients of one round hold different broadcast models (their signed commitments differ, or
    a commitment shown to a client does not carry its owner's signature): they refuse to mask
    and unmask together, and the round is aborted (a malicious server's model inconsistency)."""


class ProtocolViolation(SecAggError):
    """A message failed authentication, was replayed, came from an unknown party or is malformed."""


class EncodingOverflow(SecAggError):
    """The fixed-point sum could wrap around the modulus R (or the wrap probability is too high)."""
