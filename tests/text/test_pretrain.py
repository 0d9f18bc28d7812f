"""Pre-training cache and bits per character (closed form of a uniform model)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fedguard.text.pretrain import PretrainConfig, base_model, bits_per_character
from fedguard.text.tokenizer import VOCAB_SIZE


class Uniform(nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*tokens.shape, VOCAB_SIZE)


def test_bits_per_character_of_a_uniform_model() -> None:
    # ASCII: one token per character, log2(V) bits each
    got = bits_per_character(Uniform(), "abcdefgh" * 40, context=15)
    assert got == pytest.approx(math.log2(VOCAB_SIZE), rel=1e-6)
    # two-byte characters, windows of 17 tokens starting on character boundaries every other
    # window: the predicted tokens of each pair of windows hold 16 + 16 bytes and 8 + 8 starts
    # of characters (a window's first token is never predicted)
    got = bits_per_character(Uniform(), "é" * 170, context=16)
    assert got == pytest.approx(math.log2(VOCAB_SIZE) * 32 / 16, rel=1e-6)


def test_base_model_is_cached_per_configuration(tmp_path) -> None:
    cfg = PretrainConfig(n_layer=1, n_head=2, d_model=8, context=8, steps=3)
    first = base_model(cfg, tmp_path)
    files = list((tmp_path / "models").glob("gpt-base-*.pt"))
    assert [f.name for f in files] == [f"gpt-base-{cfg.key()}.pt"]
    again = base_model(cfg, tmp_path)  # read back from the cache
    for (name, a), (_, b) in zip(
        first.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    other = PretrainConfig(n_layer=1, n_head=2, d_model=8, context=8, steps=3, seed=1)
    assert other.key() != cfg.key()
    assert not torch.equal(base_model(other, tmp_path).head.weight, first.head.weight)
