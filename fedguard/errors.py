"""User-facing errors.

A :class:`UserError` carries one sentence that names the offending field and what is allowed.
The CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, CLI flags, data files)."""


class ConfigError(UserError):
    """A configuration value is unknown, of the wrong type or out of range."""


def require(condition: bool, field_name: str, allowed: str) -> None:
    """Raise a one-sentence :class:`ConfigError` naming ``field_name`` unless ``condition`` holds.

    Here, torch-free, so that the accounting leaf (:mod:`fedguard.privacy`) can validate without
    importing anything above it; :mod:`fedguard.api` re-exports it for plugins.
    """
    if not condition:
        raise ConfigError(f"{field_name} must be {allowed}.")


class IncompatibleError(UserError):
    """Two components cannot be combined soundly (e.g. Krum under secure aggregation).

    Matrices record such cells as ``incompatible`` with this message as the reason.
    """


class RoundAborted(UserError):
    """A round could not complete (e.g. secure aggregation lost too many clients to unmask).

    The round loop records the reason, leaves the model unchanged and goes on with the next round,
    as a real deployment would retry.
    """
