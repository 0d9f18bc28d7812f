"""LoRA and FFA-LoRA modules against hand computations; freezing keeps base weights out of the
flat vector; one-sentence errors for bad targets and ranks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedguard.core.local_training import ClientData, LocalTrainingConfig, train_vectorized
from fedguard.errors import ConfigError
from fedguard.models.flat import FlatModel
from fedguard.models.gpt import GPT, gpt2_init
from fedguard.models.lora import LoRALinear, adapt, adapter_pairs, init_adapters, merge_adapters
from fedguard.text.tokenizer import VOCAB_SIZE


def _gpt() -> nn.Module:
    module = GPT(n_layer=2, n_head=2, d_model=16, context=8).build((8,), VOCAB_SIZE)
    gpt2_init(module, torch.Generator().manual_seed(0))
    return module


def _randomize_b(module: nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=gen))


def test_adapted_layer_is_w_x_plus_scaled_b_a_x_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, rank=3, alpha=12.0)
    with torch.no_grad():
        layer.lora_A.weight.copy_(torch.randn(3, 6, generator=gen))
        layer.lora_B.weight.copy_(torch.randn(5, 3, generator=gen))
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    w, b = base.weight.double(), base.bias.double()
    a, bb = layer.lora_A.weight.double(), layer.lora_B.weight.double()
    by_hand = x @ w.T + b + (12.0 / 3) * (x @ a.T) @ bb.T
    torch.testing.assert_close(layer.double()(x), by_hand)


def test_merged_model_equals_unmerged_and_b_zero_equals_base() -> None:
    base = _gpt()
    adapted = adapt(base, ["query", "value"], rank=4, alpha=8.0)
    init_adapters(adapted, torch.Generator().manual_seed(3))
    tokens = torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(adapted(tokens), base(tokens))  # B = 0: the base model
    _randomize_b(adapted)
    assert not torch.allclose(adapted(tokens), base(tokens), atol=1e-3)
    merged = merge_adapters(adapted)
    assert not any(True for _ in merged.parameters())
    torch.testing.assert_close(merged(tokens), adapted(tokens), atol=1e-5, rtol=1e-5)


def test_flat_vector_holds_only_adapters() -> None:
    adapted = adapt(_gpt(), ["attention.query", "blocks.1.mlp.*"], rank=2, alpha=4.0)
    layout = FlatModel.of(adapted).layout
    assert all(".lora_A." in n or ".lora_B." in n for n in layout.names)
    layers = [p[0] for p in adapter_pairs(layout.names)]
    assert layers == [
        "blocks.0.attention.query",
        "blocks.1.attention.query",
        "blocks.1.mlp.expand",
        "blocks.1.mlp.contract",
    ]
    assert layout.dim == sum(2 * (16 + 16) for _ in range(2)) + 2 * (16 + 64) * 2
    ffa = adapt(_gpt(), ["query"], rank=2, alpha=4.0, train_a=False)
    names = FlatModel.of(ffa).layout.names
    assert names == (
        "blocks.0.attention.query.lora_B.weight",
        "blocks.1.attention.query.lora_B.weight",
    )
    assert [p[1] for p in adapter_pairs(names)] == [None, None]


def test_ffa_lora_training_leaves_every_a_bit_for_bit_unchanged() -> None:
    module = adapt(_gpt(), ["query", "key", "value"], rank=2, alpha=4.0, train_a=False)
    init_adapters(module, torch.Generator().manual_seed(5))
    a_before = {n: b.clone() for n, b in module.named_buffers() if "lora_A" in n}
    assert len(a_before) == 6
    model = FlatModel.of(module)
    gen = torch.Generator().manual_seed(6)
    windows = [torch.randint(0, 256, (6, 9), generator=gen) for _ in range(2)]
    data = ClientData.pad([w[:, :-1].float() for w in windows], [w[:, 1:] for w in windows])
    p0 = model.initial_params()
    deltas = train_vectorized(
        model, p0, data, [0, 1], LocalTrainingConfig(batch_size=3, learning_rate=0.5), 0, 0
    )
    assert deltas.abs().max() > 0  # B moved
    for name, a in module.named_buffers():
        if "lora_A" in name:
            assert torch.equal(a, a_before[name])


@pytest.mark.parametrize(
    ("targets", "rank", "field"),
    [
        (["qeury"], 2, "model.lora_targets"),
        (["query"], 17, "model.lora_rank"),
        (["query"], 0, "model.lora_rank"),
    ],
)
def test_bad_adapter_settings_are_one_sentence(targets, rank, field) -> None:
    with pytest.raises(ConfigError) as info:
        adapt(_gpt(), targets, rank=rank, alpha=1.0)
    message = str(info.value)
    assert message.startswith(field) and message.endswith(".") and "\n" not in message


def test_averaging_mismatch_is_the_covariance_of_a_and_b() -> None:
    from fedguard.models.lora import averaging_mismatch

    gen = torch.Generator().manual_seed(7)
    a = torch.randn(5, 2, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(5, 4, 2, generator=gen, dtype=torch.float64)
    by_hand = sum((b[i] - b.mean(0)) @ (a[i] - a.mean(0)) for i in range(5)) / 5
    torch.testing.assert_close(averaging_mismatch(a, b), by_hand)
    same_a = a[:1].expand(5, -1, -1)  # FFA-LoRA: one frozen A for everyone
    assert torch.allclose(
        averaging_mismatch(same_a, b), torch.zeros(4, 6, dtype=torch.float64), atol=1e-12
    )
