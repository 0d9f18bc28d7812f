"""The canary free-rider plugin: fixed direction per client id, seeded inclusion, zero if absent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from fedguard.api import FreeRiderContext
from fedguard.attacks.canaries.canary import Canary, canary_update, inclusion_truth
from fedguard.audit import canary_direction, canary_included
from fedguard.errors import ConfigError, IncompatibleError


@dataclass(frozen=True)
class ContextWithId(FreeRiderContext):
    """The context the plugin needs: the core's, plus the free-rider's client id."""

    client_id: int = -1


def context(client_id: int, round_index: int, dimension: int = 50) -> ContextWithId:
    return ContextWithId(
        round_index,
        torch.zeros(dimension),
        [],
        torch.Generator().manual_seed(round_index),
        client_id,
    )


def test_update_is_fixed_across_rounds_and_scaled_to_the_clip_norm() -> None:
    canary = Canary(clip_norm=0.7, canary_seed=3)
    inserted = next(i for i in range(20) if canary_included(i, 3))
    first, later = canary(context(inserted, 0)), canary(context(inserted, 9))
    assert torch.equal(first, later)
    assert torch.linalg.vector_norm(first).item() == pytest.approx(0.7, rel=1e-6)
    assert torch.equal(first, 0.7 * canary_direction(inserted, 50, 3))


def test_absent_canaries_send_zero_and_truth_matches() -> None:
    truth = inclusion_truth(range(40), canary_seed=1)
    assert 5 < sum(truth["included"]) < 35
    for cid, inserted in zip(truth["client_ids"], truth["included"], strict=True):
        update = canary_update(cid, 30, clip_norm=1.0, canary_seed=1)
        assert bool(update.abs().sum() > 0) == inserted


def test_refuses_a_context_without_client_id_and_bad_parameters() -> None:
    # a context built outside the round loop carries client_id = -1
    ctx = FreeRiderContext(0, torch.zeros(5), [], torch.Generator())
    with pytest.raises(IncompatibleError, match="client_id"):
        Canary()(ctx)
    with pytest.raises(ConfigError, match="clip_norm"):
        Canary(clip_norm=0.0)
    with pytest.raises(ConfigError, match="inclusion_probability"):
        Canary(inclusion_probability=1.0)
