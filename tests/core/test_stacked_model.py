"""The stacked-parameter engine: gradients equal vmap's, trainers agree across engines, no
torch._dynamo or scikit-learn on the default path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    _gradient_fn,
    stacked_plan,
    train_sequential,
    train_vectorized,
)
from fedguard.core.stacked_model import StackedModel
from fedguard.models.cnn import CNN
from fedguard.models.flat import FlatModel
from fedguard.models.logreg import LogReg
from fedguard.models.mlp import MLP

SHAPE = (1, 8, 8)


def _data(sizes: list[int], seed: int = 0) -> ClientData:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(n, *SHAPE, generator=g) for n in sizes]
    ys = [torch.randint(0, 10, (n,), generator=g) for n in sizes]
    return ClientData.pad(xs, ys)


@pytest.mark.parametrize("spec", [LogReg(), MLP(hidden=(16, 8), activation="tanh"), CNN((3, 4))])
def test_stacked_gradient_equals_vmap_gradient(spec) -> None:
    torch.manual_seed(1)
    model = FlatModel.of(spec.build(SHAPE, 10))
    plan = stacked_plan(model, SHAPE)
    assert plan is not None
    k, batch = 3, 5
    g = torch.Generator().manual_seed(2)
    params = model.initial_params() + 0.1 * torch.randn(k, model.layout.dim, generator=g)
    x = torch.rand(k, batch, *SHAPE, generator=g)
    y = torch.randint(0, 10, (k, batch), generator=g)
    weight = torch.rand(k, batch, generator=g)
    out = [torch.empty(b.shape) for b in plan.blocks(params)]
    stacked = StackedModel.join(_gradient_fn(model, plan)(plan.blocks(params), x, y, weight, out))
    reference = _gradient_fn(model, None)([params], x, y, weight, [])[0]
    torch.testing.assert_close(stacked, reference, rtol=1e-5, atol=1e-6)
    assert reference.abs().max() > 0


def test_unsupported_model_falls_back_to_vmap() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1))

    torch.manual_seed(0)
    model = FlatModel.of(Custom())
    assert stacked_plan(model, SHAPE) is None
    # a Sequential whose Linear would see an unflattened image is refused too
    assert stacked_plan(FlatModel.of(nn.Sequential(nn.Linear(8, 10))), SHAPE) is None
    data = _data([5, 9])
    cfg = LocalTrainingConfig(batch_size=4, learning_rate=0.1)
    p0 = model.initial_params()
    auto = train_vectorized(model, p0, data, [0, 1], cfg, 0, 0)
    seq = train_sequential(model, p0, data, [0, 1], cfg, 0, 0)
    torch.testing.assert_close(auto, seq, atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="stacked engine"):
        train_vectorized(model, p0, data, [0, 1], cfg, 0, 0, engine="stacked")


@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainingConfig(local_epochs=2, batch_size=3, momentum=0.9, prox_mu=0.1),
        LocalTrainingConfig(algorithm="fedsgd", learning_rate=0.5),
    ],
)
def test_engines_agree_and_a_client_does_not_depend_on_its_cohort(cfg) -> None:
    torch.manual_seed(0)
    model = FlatModel.of(MLP(hidden=(16,)).build(SHAPE, 10))
    p0 = model.initial_params()
    data = _data([4, 11, 0, 7, 11, 2])  # unequal schedules, one empty client
    ids = [3, 0, 1, 2, 5, 4]  # not sorted by schedule length
    stacked = train_vectorized(model, p0, data, ids, cfg, 4, 1, engine="stacked")
    vmapped = train_vectorized(model, p0, data, ids, cfg, 4, 1, engine="vmap")
    torch.testing.assert_close(stacked, vmapped, atol=1e-6, rtol=1e-5)
    assert torch.equal(stacked[ids.index(2)], torch.zeros(p0.numel()))  # no data: no change
    alone = train_vectorized(model, p0, data, [1], cfg, 4, 1)
    torch.testing.assert_close(stacked[ids.index(1)], alone[0], atol=1e-7, rtol=1e-6)


def _imports_after(code: str) -> set[str]:
    probe = (
        f"import sys\n{code}\n"
        "print(','.join(m for m in ('torch._dynamo', 'sklearn', 'pandas') if m in sys.modules))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return set(filter(None, done.stdout.strip().split(",")))


def test_default_path_imports_neither_dynamo_nor_sklearn() -> None:
    code = (
        "import torch\n"
        "from fedguard.core.local_training import ClientData, LocalTrainingConfig, train_vectorized\n"
        "import fedguard.core.simulation, fedguard.data.datasets\n"
        "from fedguard.models.flat import FlatModel\n"
        "from fedguard.models.mlp import MLP\n"
        "m = FlatModel.of(MLP().build((4,), 3))\n"
        "d = ClientData.pad([torch.rand(5, 4)] * 2, [torch.zeros(5, dtype=torch.long)] * 2)\n"
        "train_vectorized(m, m.initial_params(), d, [0, 1], LocalTrainingConfig(batch_size=2), 0, 0)\n"
        "from fedguard.data.dataset import split\n"
        "split(fedguard.data.datasets.DigitsDataset().load(), 0.2, 0.1, 0)"
    )
    assert _imports_after(code) == set()


@pytest.mark.slow  # importing torch._dynamo takes seconds; the check above stays in the fast set
def test_the_vmap_fallback_is_what_imports_dynamo() -> None:
    """The probe above can see the import it is guarding against."""
    code = "import torch\nfrom torch.func import grad\ngrad(lambda x: (x * x).sum())(torch.ones(2))"
    assert "torch._dynamo" in _imports_after(code)


def test_stacked_plan_is_cached_per_module_and_shape() -> None:
    model = FlatModel.of(MLP().build(SHAPE, 10))
    assert stacked_plan(model, SHAPE) is stacked_plan(model, SHAPE)
    assert np.prod(SHAPE) == 64
