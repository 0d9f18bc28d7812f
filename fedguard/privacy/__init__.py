"""Differential-privacy book-keeping: events, the ledger, accountants, calibration.

Mechanisms return :mod:`fedguard.privacy.events`; runs store them in a
:class:`~fedguard.privacy.ledger.PrivacyLedger` (``ledger.json``); accountants in
:mod:`fedguard.privacy.accountants` turn them into ε. Importing this package is light (no
Opacus / dp-accounting); those load when an accountant that wraps them is used.
"""

from __future__ import annotations

from fedguard.privacy.events import (
    ClientEvent,
    Composed,
    DiscreteGaussian,
    Gaussian,
    PrivacyEvent,
    PrivacyUnit,
    RandomizedQuantization,
    Sampled,
    Skellam,
    compose,
    event_from_dict,
    gaussian_for_sum,
    sampled_gaussian,
)
from fedguard.privacy.ledger import LedgerError, PrivacyLedger, load_ledgers, save_ledgers
from fedguard.privacy.matrix_events import MatrixGaussian

__all__ = [
    "ClientEvent",
    "Composed",
    "DiscreteGaussian",
    "Gaussian",
    "LedgerError",
    "MatrixGaussian",
    "PrivacyEvent",
    "PrivacyLedger",
    "PrivacyUnit",
    "RandomizedQuantization",
    "Sampled",
    "Skellam",
    "compose",
    "event_from_dict",
    "gaussian_for_sum",
    "load_ledgers",
    "sampled_gaussian",
    "save_ledgers",
]
