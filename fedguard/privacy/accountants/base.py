"""The interface every accountant implements."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import PrivacyEvent


class UnsupportedEventError(IncompatibleError):
    """The accountant cannot account this event (the message says which part and why)."""


def check_delta(delta: float) -> float:
    """``delta`` as a float, or a one-sentence :class:`ConfigError` unless 0 < delta < 1."""
    ok = isinstance(delta, int | float) and not isinstance(delta, bool) and 0 < delta < 1
    if not ok:
        raise ConfigError(f"delta must be a number in (0, 1) (got {delta!r}).")
    return float(delta)


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` as a float, or a one-sentence :class:`ConfigError` unless it is finite, >= 0."""
    ok = (
        isinstance(epsilon, int | float)
        and not isinstance(epsilon, bool)
        and math.isfinite(epsilon)
        and epsilon >= 0
    )
    if not ok:
        raise ConfigError(f"epsilon must be a finite number >= 0 (got {epsilon!r}).")
    return float(epsilon)


class Accountant(ABC):
    """Turns a :class:`~fedguard.privacy.events.PrivacyEvent` into (ε, δ) guarantees.

    Subclasses are frozen dataclasses whose fields are the accountant's settings.
    ``epsilon``/``delta`` raise :class:`UnsupportedEventError` for events the accountant cannot
    handle; call :meth:`supports` first to get the reason without an exception.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def supports(self, event: PrivacyEvent) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)`` — one sentence naming the unsupported part."""

    @abstractmethod
    def _epsilon(self, event: PrivacyEvent, delta: float) -> float: ...

    @abstractmethod
    def _delta(self, event: PrivacyEvent, epsilon: float) -> float: ...

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-safe description (name, library and version, parameters) for audit output."""

    def _check(self, event: PrivacyEvent) -> None:
        if not isinstance(event, PrivacyEvent):
            raise ConfigError(f"event must be a PrivacyEvent (got {type(event).__name__}).")
        ok, reason = self.supports(event)
        if not ok:
            raise UnsupportedEventError(f"the {self.name} accountant cannot account this: {reason}")

    def epsilon(self, event: PrivacyEvent, delta: float) -> float:
        """Smallest ε (an upper bound) such that ``event`` is (ε, δ)-DP."""
        delta = check_delta(delta)
        self._check(event)
        return float(self._epsilon(event, delta))

    def delta(self, event: PrivacyEvent, epsilon: float) -> float:
        """Smallest δ (an upper bound) such that ``event`` is (ε, δ)-DP."""
        epsilon = check_epsilon(epsilon)
        self._check(event)
        return float(min(1.0, max(0.0, self._delta(event, epsilon))))
