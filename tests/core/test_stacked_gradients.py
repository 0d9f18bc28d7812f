"""The vectorized trainer's speed paths on the stacked plan stay exact: gradients computed in
groups of clients equal those of one group, and padding slots past every real batch are not
computed."""

from __future__ import annotations

import torch

import fedguard.core.local_training as local_training
import fedguard.core.stacked_gradients as stacked_gradients
from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    stacked_plan,
    train_sequential,
    train_vectorized,
)
from fedguard.core.stacked_gradients import clients_per_group
from fedguard.core.stacked_model import StackedModel
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5


def _lenet_inputs(k: int, batch: int) -> tuple[FlatModel, StackedModel, list, tuple]:
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 28, 28), 10))
    plan = stacked_plan(model, (1, 28, 28))
    assert plan is not None
    g = torch.Generator().manual_seed(1)
    params = model.initial_params() + 0.05 * torch.randn(k, model.layout.dim, generator=g)
    x = torch.randn(k, batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (k, batch), generator=g)
    weight = torch.rand(k, batch, generator=g)
    return model, plan, plan.blocks(params), (x, y, weight)


def test_groups_of_clients_give_the_gradients_of_one_group(monkeypatch) -> None:
    k, batch = 5, 3
    _, plan, blocks, (x, y, weight) = _lenet_inputs(k, batch)
    per_sample = 2 * batch * plan.activation_elements * 4
    results = {}
    for size in (1, 2, k):
        monkeypatch.setattr(stacked_gradients, "CACHE_BYTES", size * per_sample)
        assert clients_per_group(plan, k, batch, 4) == size
        out = [torch.full(b.shape, float("nan")) for b in blocks]  # every row must be written
        results[size] = StackedModel.join(
            stacked_gradients.stacked_gradients(plan, blocks, x, y, weight, out)
        )
    assert not results[k].isnan().any() and float(results[k].abs().max()) > 0
    for size in (1, 2):
        torch.testing.assert_close(results[size], results[k], rtol=1e-5, atol=1e-6)


def test_groups_are_the_fewest_that_fit_and_of_equal_sizes(monkeypatch) -> None:
    _, plan, _, _ = _lenet_inputs(1, 1)
    per_client = 2 * 16 * plan.activation_elements * 4
    monkeypatch.setattr(stacked_gradients, "CACHE_BYTES", 17 * per_client + 5)
    assert clients_per_group(plan, 17, 16, 4) == 17  # one group
    assert clients_per_group(plan, 20, 16, 4) == 10  # 10 + 10, not 17 + 3
    assert clients_per_group(plan, 35, 16, 4) == 12  # 12 + 12 + 11, not 17 + 17 + 1
    assert clients_per_group(plan, 100, 1, 4) == 100  # small batches: all at once
    monkeypatch.setattr(stacked_gradients, "CACHE_BYTES", 1)
    assert clients_per_group(plan, 3, 16, 4) == 1  # not even one client fits: one at a time


def test_lenet5_activation_count() -> None:
    """Every layer's output for one 28×28 image as the module runs it: conv and ReLU 6·28²
    each, pool 6·14², conv and ReLU 16·10² each, pool and flatten 16·5² each, then 120, 120,
    84, 84 and 10."""
    _, plan, _, _ = _lenet_inputs(1, 1)
    expected = 2 * 6 * 784 + 6 * 196 + 2 * 16 * 100 + 2 * 16 * 25 + 120 + 120 + 84 + 84 + 10
    assert plan.activation_elements == expected


def test_steps_compute_no_slot_past_every_real_batch(monkeypatch) -> None:
    """20 samples a client in batches of 16: the second step holds 4 real samples a client, so
    the gradient is computed on 4 slots, not 16 (12 of them padding). Exact against the
    sequential reference."""
    widths: list[int] = []
    make = local_training._gradient_fn

    def recording(model, plan):
        gradient = make(model, plan)

        def wrapped(params, x, y, weight, out):
            widths.append(x.shape[1])
            return gradient(params, x, y, weight, out)

        return wrapped

    monkeypatch.setattr(local_training, "_gradient_fn", recording)
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 12, 12), 3))
    g = torch.Generator().manual_seed(0)
    data = ClientData.pad(
        [torch.randn(20, 1, 12, 12, generator=g) for _ in range(3)],
        [torch.randint(0, 3, (20,), generator=g) for _ in range(3)],
    )
    cfg = LocalTrainingConfig(batch_size=16, learning_rate=0.1)
    p0 = model.initial_params()
    vec = train_vectorized(model, p0, data, [0, 1, 2], cfg, seed=0, round_index=0)
    assert widths == [16, 4]
    seq = train_sequential(model, p0, data, [0, 1, 2], cfg, seed=0, round_index=0)
    torch.testing.assert_close(vec, seq, atol=1e-6, rtol=1e-5)
