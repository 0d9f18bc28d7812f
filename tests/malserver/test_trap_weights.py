"""Trap weights: a row fired by one sample gives it back exactly; recovery falls with the batch."""

from __future__ import annotations

import torch

from attacks.malicious_server.layers import first_layer
from attacks.malicious_server.trap import trap_recovery, trap_weight_matrix
from attacks.malicious_server.trap_weights import TrapWeights
from fedguard.models.flat import ParamLayout
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


def test_trap_rows_fire_rarely_on_non_negative_inputs() -> None:
    x, _ = digits()
    gen = torch.Generator().manual_seed(0)
    w = trap_weight_matrix(128, 64, 0.6, gen)
    assert ((w < 0).sum(dim=1) == 32).all()  # half of each row negative
    fires = (x.reshape(-1, 64).double() @ w.T > 0).double().mean()
    honest = torch.nn.Linear(64, 128)
    fires_honest = (honest(x.reshape(-1, 64)) > 0).double().mean()
    assert fires < 0.2 < 0.4 < fires_honest


def test_a_single_sample_is_recovered_exactly_from_any_fired_row() -> None:
    x, y = digits()
    model = mlp(64)
    layer = first_layer(ParamLayout.of(model), 64)
    ctx = broadcast_context(model, (0, 1, 2), (x[1400:], y[1400:]), seed=0, round_=0)
    plan = TrapWeights().broadcast(flat_params(model), ctx)
    update = fedsgd_updates(model, plan.model[None], [(x[:1], y[:1])], LEARNING_RATE)[0]
    rec = trap_recovery(layer.weight_of(update), layer.bias_of(update), 1, (0.0, 1.0))
    assert rec.shape == (1, 64)
    torch.testing.assert_close(rec[0].float(), x[0].reshape(-1), atol=1e-5, rtol=0)


def test_recovery_rate_falls_with_the_batch_size() -> None:
    """Recovered fraction (PSNR ≥ 30 dB, 3 dB over the class mean) for one client holding B
    digits, 4 rounds each: high for B = 2, lower for B = 32."""
    x, y = digits()
    rate = {}
    for batch in (2, 8, 32):
        hits = total = 0
        for trial in range(4):
            model = mlp(128, seed=trial)
            ctx = broadcast_context(model, (0, 1, 2), (x[1400:], y[1400:]), seed=trial, round_=0)
            attack = TrapWeights()
            plan = attack.broadcast(flat_params(model), ctx)
            pick = torch.randperm(1400, generator=torch.Generator().manual_seed(trial))[:batch]
            update = fedsgd_updates(model, plan.model[None], [(x[pick], y[pick])], LEARNING_RATE)
            view = server_view(0, (0,), (batch,), plan, update, update[0])
            output = attack.observe(view, task(model))
            assert output is not None
            scores = attack.metrics(output, truth_of((0,), [(x[pick], y[pick])], (x, y)))
            hits += int(scores["n_recovered"])
            total += batch
        rate[batch] = hits / total
    assert rate[2] >= 0.75
    assert rate[2] > rate[8] > rate[32]
