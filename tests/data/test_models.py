"""Built-in models of the field and the user's own nn.Module: checks, sizes, and the vectorized
trainer exact against the sequential reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    train_sequential,
    train_vectorized,
)
from fedguard.errors import ConfigError
from fedguard.models.char_lstm import CharLSTM
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5
from fedguard.models.resnet_gn import ResNet8GN, ResNet18GN
from fedguard.models.torch_module import TorchModule, check_module

USER_MODULE = """
import torch
from torch import nn

IMPORTED = True


def make_model(input_shape, n_classes, hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))


def with_batchnorm(n_classes):
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, n_classes))


def wrong_output():
    return nn.Linear(4, 7)


def not_a_module():
    return 3
"""


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_architectures() -> None:
    # LeNet-5 on 28×28×1, 62 classes: 156 + 2416 + 48120 + 10164 + 5270
    assert _count(LeNet5().build((1, 28, 28), 62)) == 66126
    # CIFAR ResNet-18 (3×3 stem, 64-512 channels): 11,173,962 parameters, GroupNorm's affine
    # parameters standing in one for one for BatchNorm's
    assert _count(ResNet18GN().build((3, 32, 32), 10)) == 11_173_962
    resnet8 = ResNet8GN().build((3, 32, 32), 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in resnet8.modules())


def _data(shape: tuple[int, ...], n_classes: int, counts: list[int], ints: int = 0) -> ClientData:
    gen = torch.Generator().manual_seed(0)
    feats, labels = [], []
    for n in counts:
        x = (
            torch.randint(0, ints, (n, *shape), generator=gen).float()
            if ints
            else torch.randn(n, *shape, generator=gen)
        )
        feats.append(x)
        labels.append(torch.randint(0, n_classes, (n,), generator=gen))
    return ClientData.pad(feats, labels)


@pytest.mark.parametrize(
    ("spec", "shape", "ints"),
    [
        (LeNet5(), (1, 14, 14), 0),
        (ResNet8GN(width=4), (3, 8, 8), 0),
        (CharLSTM(embedding=4, hidden=6, layers=2), (5,), 81),
    ],
    ids=["lenet5", "resnet8_gn", "char_lstm"],
)
def test_vectorized_matches_sequential(spec, shape: tuple[int, ...], ints: int) -> None:
    torch.manual_seed(0)
    module = spec.build(shape, 4)
    check_module(module, shape, 4, type(spec).__name__)  # every built-in passes the user checks
    model = FlatModel.of(module)
    data = _data(shape, 4, [7, 3, 5], ints)
    cfg = LocalTrainingConfig(batch_size=3, learning_rate=0.05, momentum=0.5)
    p0 = model.initial_params()
    ids = [0, 1, 2]
    vec = train_vectorized(model, p0, data, ids, cfg, seed=1, round_index=0)
    seq = train_sequential(model, p0, data, ids, cfg, seed=1, round_index=0)
    assert float(vec.abs().max()) > 0
    torch.testing.assert_close(vec, seq, atol=2e-5, rtol=1e-4)


@pytest.fixture
def user_module(tmp_path: Path):
    name = "fg_user_models_t"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    yield name, str(tmp_path)
    sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_torch_module_builds_the_users_model(user_module) -> None:
    name, path = user_module
    spec = TorchModule(factory=f"{name}:make_model", kwargs={"hidden": 5}, path=path)
    assert name not in sys.modules  # constructing the spec imports nothing
    module = spec.build((4,), 3)
    assert isinstance(module[1], nn.Linear) and module[1].out_features == 5
    assert _count(module) == 4 * 5 + 5 + 5 * 3 + 3


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("with_batchnorm", r"layer '1' is BatchNorm1d.*use nn.GroupNorm instead"),
        (
            "wrong_output",
            r"returns \(2, 7\) for a batch of 2; it must return logits shaped \(batch, 3\)",
        ),
        ("not_a_module", "must return a torch.nn.Module; it returned int"),
        ("missing", "cannot be imported"),
    ],
)
def test_torch_module_refuses_what_cannot_train(user_module, factory: str, message: str) -> None:
    name, path = user_module
    with pytest.raises(ConfigError, match=message):
        TorchModule(factory=f"{name}:{factory}", path=path).build((4,), 3)


def test_unimportable_factory_and_bad_spelling() -> None:
    with pytest.raises(ConfigError, match="cannot be imported"):
        TorchModule(factory="no_such_package_xyz.models:make").build((4,), 3)
    with pytest.raises(ConfigError, match="model.factory must be an import path"):
        TorchModule(factory="not a path")


def test_state_changing_buffers_and_rnn_layers_are_refused() -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.lin(x)

    with pytest.raises(ConfigError, match="buffer 'calls' changes in the forward pass"):
        check_module(Counter(), (4,), 3, "counter")

    class Rnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 3, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    with pytest.raises(ConfigError, match="layer 'rnn' is LSTM"):
        check_module(Rnn(), (2, 4), 3, "rnn")


def test_resnet_convolves_in_channels_last_on_cpu_and_vmaps_in_nchw() -> None:
    """The CPU speed-up (NHWC convolutions) must not leak into ``torch.func`` transforms, where
    vmap cannot handle that layout, and must not change what the network computes."""
    torch.manual_seed(0)
    module = ResNet8GN(width=4).build((3, 8, 8), 5)
    x = torch.randn(6, 3, 8, 8)
    seen: list[bool] = []
    hook = module.stem[0].register_forward_hook(
        lambda _m, inputs, _out: seen.append(
            inputs[0].is_contiguous(memory_format=torch.channels_last)
        )
    )
    out = module(x)
    hook.remove()
    assert seen == [True]
    model = FlatModel.of(module)
    stacked = model.initial_params().expand(2, -1)
    batched = torch.func.vmap(model.forward, in_dims=(0, None))(stacked, x)  # NCHW inside
    torch.testing.assert_close(batched[0], out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched[1], out, atol=1e-5, rtol=1e-4)


def test_cpu_evaluation_runs_in_cache_sized_batches_with_the_same_result() -> None:
    """Evaluation on a CPU cuts convolutional inputs into small batches (a 4,096-image batch
    of LeNet-5 activations streams from main memory: 2× slower); the accuracy and loss are
    those of one whole batch up to float rounding."""
    from fedguard.models.flat import evaluation_batch

    assert evaluation_batch(torch.zeros(2, 1, 28, 28)) == 256
    assert evaluation_batch(torch.zeros(2, 3, 32, 32)) == 64
    assert evaluation_batch(torch.zeros(2, 64)) == 4096
    assert evaluation_batch(torch.zeros(2, 600)) == 4096  # tables and token sequences keep it
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 14, 14), 4))
    x, y = torch.randn(700, 1, 14, 14), torch.randint(0, 4, (700,))
    assert evaluation_batch(x) == 1024  # 196 pixels a sample
    small = model.evaluate(model.initial_params(), x, y, batch=64)  # 11 batches, one partial
    whole = model.evaluate(model.initial_params(), x, y, batch=700)
    assert small[0] == whole[0]
    assert small[1] == pytest.approx(whole[1], rel=1e-6)
