"""The vectorized trainer's speed paths on the stacked plan stay exact: the flipped-kernel input
gradient of a grouped convolution equals autograd's, gradients computed in groups of clients
equal those of one group, and padding slots past every real batch are not computed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

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
from fedguard.core.stacked_model import StackedModel, _flippable, stacked_conv2d
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(6, 16, 5),  # LeNet-5's second convolution
        nn.Conv2d(1, 6, 5, padding=2),  # its first, "same" padding
        nn.Conv2d(3, 4, (3, 5), padding=(1, 2)),  # rectangular kernel and padding
        nn.Conv2d(2, 3, 3, padding=2),  # padding = kernel − 1 (full convolution)
    ],
    ids=["lenet-conv2", "lenet-conv1", "rectangular", "full"],
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_flipped_input_gradient_equals_autograds(conv: nn.Conv2d, channels_last: bool) -> None:
    assert _flippable(conv)
    k, batch = 3, 4
    g = torch.Generator().manual_seed(0)
    c_in = conv.in_channels
    # float64: the identity itself is checked, not float32 rounding of two summation orders
    x = torch.randn(batch, k * c_in, 9, 11, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(k * conv.out_channels, c_in, *conv.kernel_size, generator=g, dtype=x.dtype)
    b = torch.randn(k * conv.out_channels, generator=g, dtype=x.dtype)
    ours_in = x.clone().requires_grad_()
    ref_in = x.clone().requires_grad_()
    ours = stacked_conv2d(ours_in, w, b, conv, k)
    ref = F.conv2d(ref_in, w, b, conv.stride, conv.padding, conv.dilation, groups=k)
    torch.testing.assert_close(ours, ref)
    r = torch.randn(ref.shape, generator=g, dtype=x.dtype)  # a generic output gradient
    (ours * r).sum().backward()
    (ref * r).sum().backward()
    assert ours_in.grad is not None and ref_in.grad is not None
    assert type(ours.grad_fn).__name__ == "_FlippedInputGradientBackward"
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "conv",
    [nn.Conv2d(2, 3, 3, stride=2), nn.Conv2d(2, 3, 3, dilation=2), nn.Conv2d(2, 3, 3, padding=3)],
    ids=["stride", "dilation", "padding-beyond-kernel"],
)
def test_other_convolutions_keep_autograds_backward(conv: nn.Conv2d) -> None:
    assert not _flippable(conv)
    k = 2
    x = torch.randn(2, k * 2, 9, 9, requires_grad=True)
    w = torch.randn(k * 3, 2, 3, 3)
    z = stacked_conv2d(x, w, None, conv, k)
    assert type(z.grad_fn).__name__ == "ConvolutionBackward0"


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
        assert clients_per_group(plan, batch, 4) == size
        out = [torch.full(b.shape, float("nan")) for b in blocks]  # every row must be written
        results[size] = StackedModel.join(
            stacked_gradients.stacked_gradients(plan, blocks, x, y, weight, out)
        )
    assert not results[k].isnan().any() and float(results[k].abs().max()) > 0
    for size in (1, 2):
        torch.testing.assert_close(results[size], results[k], rtol=1e-5, atol=1e-6)


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
