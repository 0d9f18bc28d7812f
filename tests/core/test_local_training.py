"""The vectorized trainer gives the sequential reference's parameters for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    batch_schedule,
    local_steps,
    train_sequential,
    train_vectorized,
)
from fedguard.data.datasets import DigitsDataset
from fedguard.data.partition import QuantitySkew
from fedguard.models.cnn import CNN
from fedguard.models.flat import FlatModel
from fedguard.models.logreg import LogReg
from fedguard.models.mlp import MLP


@pytest.fixture(scope="module")
def clients() -> ClientData:
    d = DigitsDataset().load()
    idx = np.random.default_rng(0).permutation(len(d))[:300]
    labels = d.labels.numpy()[idx]
    parts = QuantitySkew(exponent=1.2).split(labels, 12, np.random.default_rng(0))  # unequal sizes
    return ClientData.pad([d.features[idx[p]] for p in parts], [d.labels[idx[p]] for p in parts])


@pytest.mark.parametrize("spec", [LogReg(), MLP(hidden=(16,)), CNN(channels=(4,))])
@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainingConfig(batch_size=8, learning_rate=0.1),
        LocalTrainingConfig(
            local_epochs=2, batch_size=5, learning_rate=0.05, momentum=0.9, prox_mu=0.1
        ),
        LocalTrainingConfig(algorithm="fedsgd", learning_rate=0.5),
    ],
)
def test_vectorized_matches_sequential(clients: ClientData, spec, cfg) -> None:
    torch.manual_seed(0)
    model = FlatModel.of(spec.build((1, 8, 8), 10))
    p0 = model.initial_params()
    ids = list(range(len(clients.counts)))
    vec = train_vectorized(model, p0, clients, ids, cfg, seed=5, round_index=3)
    seq = train_sequential(model, p0, clients, ids, cfg, seed=5, round_index=3)
    assert vec.shape == (len(ids), p0.numel())
    assert vec.abs().max() > 0
    torch.testing.assert_close(vec, seq, atol=2e-5, rtol=1e-4)


def test_schedule_covers_each_sample_once_per_epoch() -> None:
    cfg = LocalTrainingConfig(local_epochs=3, batch_size=4)
    counts = [1, 7, 10]
    index, mask = batch_schedule(counts, [0, 1, 2], cfg, seed=0, round_index=0)
    for i, c in enumerate(counts):
        steps = local_steps(c, cfg)
        assert int(mask[i].any(-1).sum()) == steps
        visited = index[i][mask[i]].tolist()
        assert sorted(visited) == sorted(list(range(c)) * 3)


def test_schedule_of_a_client_is_independent_of_others() -> None:
    cfg = LocalTrainingConfig(batch_size=3)
    a, ma = batch_schedule([9, 5], [4, 7], cfg, seed=1, round_index=2)
    b, mb = batch_schedule([5], [7], cfg, seed=1, round_index=2)
    assert a[1][ma[1]].tolist() == b[0][mb[0]].tolist()


def test_schedule_changes_with_round() -> None:
    cfg = LocalTrainingConfig(batch_size=50)
    a, _ = batch_schedule([50], [0], cfg, seed=1, round_index=0)
    b, _ = batch_schedule([50], [0], cfg, seed=1, round_index=1)
    assert a.tolist() != b.tolist()


def test_a_client_without_samples_takes_no_step() -> None:
    """Regression: the schedule divided by a client's batches per epoch (0 without samples)."""
    cfg = LocalTrainingConfig(local_epochs=2, batch_size=3)
    _, mask = batch_schedule([0, 4], [0, 1], cfg, seed=0, round_index=0)
    assert not mask[0].any()
    assert int(mask[1].any(-1).sum()) == local_steps(4, cfg)


@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainingConfig(batch_size=3, learning_rate=0.1, momentum=0.9, prox_mu=0.1),
        LocalTrainingConfig(algorithm="fedsgd", learning_rate=0.5),
    ],
)
def test_vectorized_matches_sequential_for_next_token_prediction(cfg) -> None:
    """The GPT on token windows: (B, L, V) logits, (B, L) targets, mean over tokens per sample."""
    from fedguard.models.gpt import GPT

    gen = torch.Generator().manual_seed(1)
    windows = [torch.randint(0, 259, (n, 9), generator=gen) for n in (5, 2, 7)]
    clients = ClientData.pad([w[:, :-1].float() for w in windows], [w[:, 1:] for w in windows])
    torch.manual_seed(0)
    model = FlatModel.of(GPT(n_layer=1, n_head=2, d_model=16, context=8).build((8,), 259))
    p0 = model.initial_params()
    vec = train_vectorized(model, p0, clients, [0, 1, 2], cfg, seed=5, round_index=3)
    seq = train_sequential(model, p0, clients, [0, 1, 2], cfg, seed=5, round_index=3)
    assert vec.abs().max() > 0
    torch.testing.assert_close(vec, seq, atol=2e-5, rtol=1e-4)
