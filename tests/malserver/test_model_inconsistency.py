"""Model inconsistency through secure aggregation: the sum's first layer is the target's update
and its samples are recovered; a commitment to the broadcast model stops it in every trial,
without false alarms on honest rounds."""

from __future__ import annotations

import pytest
import torch

from attacks.malicious_server.layers import first_layer
from attacks.malicious_server.model_inconsistency import ModelInconsistency
from defenses.secure_aggregation.errors import ModelCommitmentMismatch
from defenses.secure_aggregation.model_digest import model_digest
from defenses.secure_aggregation.transport import SecAggPlusTransport, SecAggTransport
from fedguard.errors import ConfigError
from fedguard.models.flat import ParamLayout
from fedguard.types import BroadcastPlan, RoundContext
from tests.malserver.helpers import (
    LEARNING_RATE,
    broadcast_context,
    digits,
    fedsgd_updates,
    flat_params,
    mlp,
    server_view,
    task,
    truth_of,
)

N_CLIENTS, PER_CLIENT = 5, 6


def _round(trial: int, attack: ModelInconsistency | None):
    x, y = digits()
    model = mlp(32, seed=trial)
    ids = tuple(range(20 + trial, 20 + trial + N_CLIENTS))
    ctx = broadcast_context(model, ids, (x[1400:], y[1400:]), seed=trial, round_=0)
    plan = (
        attack.broadcast(flat_params(model), ctx)
        if attack is not None
        else BroadcastPlan(flat_params(model))
    )
    gen = torch.Generator().manual_seed(trial)
    pick = torch.randperm(1400, generator=gen)[: N_CLIENTS * PER_CLIENT].reshape(N_CLIENTS, -1)
    batches = [(x[p], y[p]) for p in pick]
    received = plan.received(ids)
    updates = fedsgd_updates(model, received, batches, LEARNING_RATE)
    digests = tuple(model_digest(r) for r in received)
    rc = RoundContext(0, trial, plan.model, ids, 100, model_digests=digests)
    return model, ids, plan, batches, updates, rc, (x[:1400], y[:1400])


@pytest.mark.parametrize("imprint", ["bins", "trap"])
def test_without_commitment_the_sum_is_the_targets_update_and_its_samples_are_recovered(
    imprint: str,
) -> None:
    attack = ModelInconsistency(imprint=imprint, target_client=22)
    model, ids, plan, batches, updates, rc, pool = _round(0, attack)
    assert set(plan.per_client) == {22}
    out = SecAggTransport()(updates, torch.full((N_CLIENTS,), float(PER_CLIENT)), rc)
    layer = first_layer(ParamLayout.of(model), 64)
    target = ids.index(22)
    for part in (layer.weight, layer.bias, layer.next_weight):
        others = torch.cat([updates[:target, part], updates[target + 1 :, part]])
        assert bool((others == 0).all())  # dead units: exactly zero, not merely small
        sent = PER_CLIENT * updates[target, part].double()
        assert torch.allclose(
            out.update_sum[part].double(), sent, atol=out.info["max_decoding_error"] + 1e-6
        )
    view = server_view(0, ids, (PER_CLIENT,) * N_CLIENTS, plan, None, out.update_sum)
    output = attack.observe(view, task(model))
    assert output is not None and [g.clients for g in output.groups] == [(22,)]
    scores = attack.metrics(output, truth_of(ids, batches, pool))
    assert scores["n_samples"] == PER_CLIENT
    assert scores["n_recovered"] >= PER_CLIENT // 2
    assert scores["recovered_psnr_median_db"] >= 60.0  # exact up to fixed-point rounding


def test_the_same_bins_on_the_whole_sum_recover_fewer_than_on_the_target_alone() -> None:
    """The inconsistency isolates the target: recovery from 6 samples instead of 30."""
    from attacks.malicious_server.robbing_the_fed import RobbingTheFed

    got = {"inconsistent": 0.0, "consistent": 0.0}
    for trial in range(6):
        for name, attack in (
            ("inconsistent", ModelInconsistency(bins=8)),
            ("consistent", RobbingTheFed(bins=8)),
        ):
            model, ids, plan, batches, updates, rc, pool = _round(trial, attack)  # type: ignore[arg-type]
            out = SecAggTransport()(updates, torch.full((N_CLIENTS,), float(PER_CLIENT)), rc)
            view = server_view(0, ids, (PER_CLIENT,) * N_CLIENTS, plan, None, out.update_sum)
            output = attack.observe(view, task(model))
            assert output is not None
            truth = truth_of((ids[0],), [batches[0]], pool)  # only the first client's samples
            got[name] += attack.metrics(output, truth)["recovered_fraction"]
    assert got["inconsistent"] > got["consistent"]


@pytest.mark.parametrize("transport_cls", [SecAggTransport, SecAggPlusTransport])
def test_model_commitment_stops_it_in_every_trial_and_never_alarms_on_honest_rounds(
    transport_cls: type[SecAggTransport],
) -> None:
    transport = transport_cls(model_commitment=True)
    weights = torch.full((N_CLIENTS,), float(PER_CLIENT))
    for trial in range(10):
        *_, updates, rc = _round(trial, ModelInconsistency())[:6]
        with pytest.raises(ModelCommitmentMismatch, match="received different models"):
            transport(updates, weights, rc)
        *_, updates, rc = _round(trial, None)[:6]
        out = transport(updates, weights, rc)  # honest broadcast: no abort
        assert out.info["survivors"] == N_CLIENTS


def test_a_target_outside_the_round_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="target_client 99 is not sampled"):
        _round(0, ModelInconsistency(target_client=99))
    with pytest.raises(ConfigError, match="imprint must be"):
        ModelInconsistency(imprint="other")
