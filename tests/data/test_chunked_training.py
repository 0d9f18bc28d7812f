"""training.max_memory: the vectorized trainer in chunks of clients, exact against one batch."""

from __future__ import annotations

import pytest
import torch

from fedguard.config import parse_spec
from fedguard.core.chunked_training import (
    ChunkedTrainer,
    activation_elements,
    bytes_per_client,
    parse_memory,
)
from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    train_sequential,
    train_vectorized,
)
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5


def test_parse_memory() -> None:
    assert parse_memory("auto") is None
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5 kb") == 1500
    assert parse_memory(1000) == 1000
    for bad in ("lots", "-3GB", 0, "0"):
        with pytest.raises(ConfigError, match="training.max_memory must be"):
            parse_memory(bad)


def test_activation_count_is_the_layer_outputs() -> None:
    module = LeNet5().build((1, 28, 28), 10)
    # conv1 6·28·28, relu, pool 6·14·14, conv2 16·10·10, relu, pool 16·5·5, flatten 400,
    # (features Sequential itself 400), fc 120, relu, 84, relu, 10, whole model 10
    per_layer = 2 * 4704 + 1176 + 2 * 1600 + 400 + 400 + 400 + 2 * 120 + 2 * 84 + 10 + 10
    assert activation_elements(module, (1, 28, 28)) == per_layer


def _clients(counts: list[int]) -> ClientData:
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 1, 12, 12, generator=gen) for n in counts]
    labels = [torch.randint(0, 3, (n,), generator=gen) for n in counts]
    return ClientData.pad(feats, labels)


def test_chunks_fit_the_budget_and_match_the_unchunked_and_sequential_trainers() -> None:
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 12, 12), 3))
    data = _clients([5, 9, 4, 7, 6])
    cfg = LocalTrainingConfig(batch_size=4, learning_rate=0.05, momentum=0.9)
    per_client = bytes_per_client(model, (1, 12, 12), 3, cfg)  # largest client: ceil(9/4) steps
    chunked = ChunkedTrainer(train_vectorized, 2 * per_client + 1, (1, 12, 12))
    ids = [4, 0, 3, 1, 2]
    assert chunked.chunk_size(model, data, ids, cfg) == 2  # three chunks: 2 + 2 + 1
    p0 = model.initial_params()
    got = chunked(model, p0, data, ids, cfg, seed=2, round_index=1)
    whole = train_vectorized(model, p0, data, ids, cfg, seed=2, round_index=1)
    seq = train_sequential(model, p0, data, ids, cfg, seed=2, round_index=1)
    torch.testing.assert_close(got, whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got, seq, atol=2e-5, rtol=1e-4)
    tiny = ChunkedTrainer(train_vectorized, 1, (1, 12, 12))  # below one client: one at a time
    assert tiny.chunk_size(model, data, ids, cfg) == 1


def test_a_run_under_a_small_budget_equals_the_default_run() -> None:
    base = {
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "cnn", "channels": [4]},
        "clients": {"n_clients": 6},
        "training": {"batch_size": 32},
    }
    small = {**base, "training": {"batch_size": 32, "max_memory": "100kB"}}
    spec_a, spec_b = parse_spec(base), parse_spec(small)
    assert spec_a.spec_hash() == spec_b.spec_hash()  # the budget never changes a result
    sims = [build_simulation(spec_a), build_simulation(spec_b)]
    assert isinstance(sims[1].trainer, ChunkedTrainer)
    ids = list(range(6))
    sizes = [
        s.trainer.chunk_size(s.model, s.clients, ids, s.local)  # type: ignore[union-attr]
        for s in sims
    ]
    assert sizes[0] >= 6 > sizes[1]
    finals = []
    for sim in sims:
        state = sim.initial_state()
        for _ in range(2):
            state, _ = sim.run_round(state)
        finals.append(state.params)
    torch.testing.assert_close(finals[0], finals[1], atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="training.max_memory"):
        build_simulation(parse_spec({**base, "training": {"max_memory": "plenty"}}))
