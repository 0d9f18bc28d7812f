"""The vectorized trainer on the field's image models: LeNet-5 (nested ``nn.Sequential``) takes
the stacked plan, ReLU → max-pool runs as max-pool → ReLU, exact against the sequential
reference also where pooling windows hold ties (constant backgrounds); ResNet-8-GN on a CPU
computes gradients client by client, the sequential reference's own operations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedguard.core.chunked_training import bytes_per_client
from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    stacked_plan,
    train_sequential,
    train_vectorized,
)
from fedguard.core.per_client_gradients import per_client_gradient_fn
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5
from fedguard.models.resnet_gn import ResNet8GN


def _digits_on_blank(n_clients: int, per_client: int, classes: int) -> ClientData:
    """Ink in a box on an all-zero page: convolutions give the same value over the blank area,
    so max-pooling windows tie there (at the bias, > 0 below)."""
    g = torch.Generator().manual_seed(0)
    xs, ys = [], []
    for _ in range(n_clients):
        x = torch.zeros(per_client, 1, 28, 28)
        x[:, :, 10:18, 8:20] = torch.rand(per_client, 1, 8, 12, generator=g)
        xs.append(x)
        ys.append(torch.randint(0, classes, (per_client,), generator=g))
    return ClientData.pad(xs, ys)


def test_lenet5_takes_the_stacked_plan_with_pooling_before_relu() -> None:
    model = FlatModel.of(LeNet5().build((1, 28, 28), 62))
    plan = stacked_plan(model, (1, 28, 28))
    assert plan is not None
    kinds = [type(layer.module) for layer in plan.layers]
    assert kinds[:6] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU, nn.Conv2d, nn.MaxPool2d, nn.ReLU]


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_lenet5_stacked_is_exact_against_sequential_with_tied_windows(momentum: float) -> None:
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 28, 28), 10))
    with torch.no_grad():
        for m in model.module.modules():
            if isinstance(m, nn.Conv2d):
                assert m.bias is not None
                m.bias.fill_(0.3)  # blank areas convolve to 0.3 > 0: ties ReLU does not hide
    data = _digits_on_blank(5, 9, 10)
    p0 = model.initial_params()
    cfg = LocalTrainingConfig(batch_size=4, learning_rate=0.1, momentum=momentum)
    ids = [0, 1, 2, 3, 4]
    stacked = train_vectorized(model, p0, data, ids, cfg, seed=0, round_index=0, engine="stacked")
    vmapped = train_vectorized(model, p0, data, ids, cfg, seed=0, round_index=0, engine="vmap")
    seq = train_sequential(model, p0, data, ids, cfg, seed=0, round_index=0)
    assert float(seq.abs().max()) > 1e-3
    torch.testing.assert_close(stacked, seq, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(vmapped, seq, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainingConfig(batch_size=3, learning_rate=0.1, momentum=0.5),
        LocalTrainingConfig(batch_size=4, learning_rate=0.05, local_epochs=2, prox_mu=0.1),
    ],
    ids=["momentum", "fedprox"],
)
def test_resnet8_gn_on_cpu_computes_what_the_sequential_reference_does(cfg) -> None:
    torch.manual_seed(0)
    model = FlatModel.of(ResNet8GN(width=4).build((3, 8, 8), 5))
    assert per_client_gradient_fn(model, "cpu") is not None
    assert per_client_gradient_fn(model, "cuda") is None  # GPUs keep vmap
    g = torch.Generator().manual_seed(1)
    counts = [7, 3, 5, 1]
    data = ClientData.pad(
        [torch.randn(n, 3, 8, 8, generator=g) for n in counts],
        [torch.randint(0, 5, (n,), generator=g) for n in counts],
    )
    p0 = model.initial_params()
    ids = [0, 1, 2, 3]
    vec = train_vectorized(model, p0, data, ids, cfg, seed=2, round_index=1)
    seq = train_sequential(model, p0, data, ids, cfg, seed=2, round_index=1)
    assert float(seq.abs().max()) > 1e-3
    # the same kernels on the same samples; only the SGD update's arithmetic may round apart
    torch.testing.assert_close(vec, seq, atol=1e-6, rtol=1e-5)
    # a client's update does not depend on its cohort
    alone = train_vectorized(model, p0, data, [2], cfg, seed=2, round_index=1)
    torch.testing.assert_close(alone[0], vec[2], atol=1e-6, rtol=1e-5)


def test_memory_estimate_counts_one_clients_activations_where_gradients_go_client_by_client() -> (
    None
):
    model = FlatModel.of(ResNet8GN(width=4).build((3, 8, 8), 5))
    cfg = LocalTrainingConfig(batch_size=4)
    d, inputs = model.layout.dim, 2 * 4 * 3 * 8 * 8
    assert bytes_per_client(model, (3, 8, 8), 2, cfg, "cpu") == 4 * (4 * d + inputs)
    assert bytes_per_client(model, (3, 8, 8), 2, cfg, "cuda") > 4 * (4 * d + inputs)  # vmap
