"""The one-pass adapter gradients of the vectorized trainer (fedguard.core.adapter_gradients)
against the sequential reference and the vmap path, and the stacked low-rank product by hand."""

from __future__ import annotations

import pytest
import torch

from fedguard.core.adapter_gradients import adapter_gradient_fn, covered
from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    train_sequential,
    train_vectorized,
)
from fedguard.models.flat import FlatModel
from fedguard.models.gpt import GPT
from fedguard.models.lora import stacked_low_rank


def _clients() -> ClientData:
    gen = torch.Generator().manual_seed(1)
    windows = [torch.randint(0, 259, (n, 9), generator=gen) for n in (5, 2, 7, 4)]
    return ClientData.pad([w[:, :-1].float() for w in windows], [w[:, 1:] for w in windows])


def _model(adapter: str) -> FlatModel:
    spec = GPT(n_layer=2, n_head=2, d_model=16, context=8, adapter=adapter, lora_rank=2)
    module = spec.build((8,), 259)
    torch.manual_seed(0)
    spec.initialize(module)
    return FlatModel.of(module)


def test_stacked_low_rank_is_each_clients_b_a_x() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3 * 2, 5, 6, generator=gen, dtype=torch.float64)  # 3 clients × 2 windows
    a = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)
    by_hand = torch.cat([x[2 * c : 2 * c + 2] @ a[c].T @ b[c].T for c in range(3)])
    torch.testing.assert_close(stacked_low_rank(x, a, b), by_hand)
    shared = a[0]  # FFA-LoRA: one frozen A
    by_hand = torch.cat([x[2 * c : 2 * c + 2] @ shared.T @ b[c].T for c in range(3)])
    torch.testing.assert_close(stacked_low_rank(x, shared, b), by_hand)


def test_only_adapted_gpts_take_the_one_pass_path() -> None:
    assert covered(_model("lora")) and covered(_model("ffa_lora"))
    assert not covered(_model("none"))  # full fine-tuning: vmap
    assert adapter_gradient_fn(_model("none")) is None


@pytest.mark.parametrize("adapter", ["lora", "ffa_lora"])
@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainingConfig(batch_size=3, learning_rate=0.5, momentum=0.9, prox_mu=0.1),
        LocalTrainingConfig(local_epochs=2, batch_size=2, learning_rate=1.0),
        LocalTrainingConfig(algorithm="fedsgd", learning_rate=2.0),
    ],
)
def test_vectorized_adapter_training_matches_sequential_and_vmap(adapter, cfg) -> None:
    model, data = _model(adapter), _clients()
    ids = [0, 1, 2, 3]
    gen = torch.Generator().manual_seed(3)  # B ≠ 0, so that A's gradient is not zero
    p0 = model.initial_params() + 0.1 * torch.randn(model.layout.dim, generator=gen)
    vec = train_vectorized(model, p0, data, ids, cfg, seed=5, round_index=3)
    seq = train_sequential(model, p0, data, ids, cfg, seed=5, round_index=3)
    ref = train_vectorized(model, p0, data, ids, cfg, seed=5, round_index=3, engine="vmap")
    assert vec.abs().max() > 1e-3
    torch.testing.assert_close(vec, seq, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(vec, ref, atol=2e-5, rtol=1e-4)


def test_per_client_starting_points_follow_each_client() -> None:
    """FedRand hands each client its own adapters: (n, d) starts, clients in any order."""
    model, data = _model("lora"), _clients()
    gen = torch.Generator().manual_seed(4)
    starts = model.initial_params() + 0.1 * torch.randn(4, model.layout.dim, generator=gen)
    cfg = LocalTrainingConfig(batch_size=2, learning_rate=0.5)
    ids = [2, 0, 3, 1]
    vec = train_vectorized(model, starts, data, ids, cfg, seed=1, round_index=0)
    seq = train_sequential(model, starts, data, ids, cfg, seed=1, round_index=0)
    torch.testing.assert_close(vec, seq, atol=2e-5, rtol=1e-4)
