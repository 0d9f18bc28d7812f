from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def oracles() -> dict[str, Any]:
    """Reference values made by fixtures/make_accountant_oracles.py (Opacus, dp-accounting)."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    return json.loads((FIXTURES / "accountant_oracles.json").read_text())
