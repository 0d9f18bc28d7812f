"""Accountants: RDP (own), PRV (Opacus), PLD (dp-accounting), analytic Gaussian.

Every accountant has ``epsilon(event, delta)``, ``delta(event, epsilon)``,
``supports(event) -> (bool, reason)`` and ``settings() -> dict``. Get one by name with
:func:`get_accountant`.
"""

from __future__ import annotations

from typing import Any

from fedguard.errors import ConfigError
from fedguard.privacy.accountants.analytic import AnalyticGaussianAccountant
from fedguard.privacy.accountants.base import Accountant, UnsupportedEventError
from fedguard.privacy.accountants.pld import PldAccountant
from fedguard.privacy.accountants.prv import PrvAccountant
from fedguard.privacy.accountants.rdp import DEFAULT_ORDERS, RdpAccountant

ACCOUNTANTS: dict[str, type[Accountant]] = {
    "rdp": RdpAccountant,
    "prv": PrvAccountant,
    "pld": PldAccountant,
    "analytic": AnalyticGaussianAccountant,
}


def get_accountant(name: str, **settings: Any) -> Accountant:
    """The accountant registered as ``name`` (rdp, prv, pld, analytic) with ``settings``."""
    cls = ACCOUNTANTS.get(name)
    if cls is None:
        raise ConfigError(f"accountant must be one of {sorted(ACCOUNTANTS)} (got {name!r}).")
    try:
        return cls(**settings)
    except TypeError as err:
        raise ConfigError(f"accountant {name!r} got unknown settings {sorted(settings)}.") from err


__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ORDERS",
    "Accountant",
    "AnalyticGaussianAccountant",
    "PldAccountant",
    "PrvAccountant",
    "RdpAccountant",
    "UnsupportedEventError",
    "get_accountant",
]
