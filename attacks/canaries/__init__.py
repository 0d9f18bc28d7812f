"""Canary clients for empirical privacy audits (see :mod:`fedguard.privacy.audit`)."""
