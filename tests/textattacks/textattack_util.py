"""A tiny GPT-style causal transformer for the text-attack tests (token + position embeddings,
pre-LayerNorm blocks with a fused q/k/v projection, causal self-attention, MLP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(dim, dim=-1)
        shape = (b, length, self.heads, dim // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, length, dim))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(
        self, vocab: int = 64, dim: int = 32, layers: int = 2, heads: int = 2, context: int = 16
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        pos = torch.arange(tokens.shape[1])
        x = self.wte(tokens) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, L, V)


def seeded_gpt(seed: int = 0, **kwargs: int) -> TinyGPT:
    torch.manual_seed(seed)  # test helper only: fixes the architecture's initial weights
    return TinyGPT(**kwargs)


def lm_loss(model: nn.Module, chunks: Tensor) -> Tensor:
    """Mean next-token cross-entropy of chunks ``(B, L + 1)``: the model reads ``chunks[:, :-1]``
    and predicts ``chunks[:, 1:]`` (every position it reads carries a loss term)."""
    logits = model(chunks[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1))


def fedsgd_update(model: nn.Module, chunks: Tensor, lr: float = 0.1) -> dict[str, Tensor]:
    """One client's FedSGD update ``θ_local − θ_global`` per parameter on chunks ``(B, L + 1)``,
    rounded through float32 exactly as a flat-vector update is."""
    model.zero_grad()
    lm_loss(model, chunks).backward()
    out = {}
    for name, p in model.named_parameters():
        assert p.grad is not None
        out[name] = (p.detach() - lr * p.grad) - p.detach()
    model.zero_grad()
    return out


def random_tokens(batch: int, length: int, vocab: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)
