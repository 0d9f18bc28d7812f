"""The outcome of an empirical privacy audit, as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: ``lower_bound``: a statistically valid lower bound on ε at the stated confidence (if the bound
#: exceeds an accountant's ε, the mechanism or its accounting is wrong, with that confidence).
#: ``estimate``: a point estimate without a guarantee (Andrew et al. 2024); it may exceed the
#: true ε.
AuditKind = Literal["lower_bound", "estimate"]


@dataclass(frozen=True)
class AuditResult:
    """An empirical ε at a given δ.

    ``method`` names the estimator (``clopper_pearson``, ``one_run``, ``gdp``,
    ``canary_gaussian``); ``confidence`` is ``None`` for estimates; ``details`` holds the counts
    and intermediate quantities the estimator used (JSON-serialisable scalars and lists).
    """

    method: str
    epsilon: float
    kind: AuditKind
    delta: float
    confidence: float | None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "epsilon": self.epsilon,
            "kind": self.kind,
            "delta": self.delta,
            "confidence": self.confidence,
            "details": dict(self.details),
        }
