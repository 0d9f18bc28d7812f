"""The GPT's layers: a small decoder-only transformer (GPT-2 style) on byte tokens.

The model spec that builds it (``gpt``: pre-training, adapters) is :mod:`fedguard.models.gpt`,
which re-exports everything here; the pre-training (:mod:`fedguard.text.pretrain`) imports only
this module, so neither imports the other.

References
----------
Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019 (pre-LN
blocks, learned positional embeddings, initialisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions ≤ t."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, d)
        batch, length, d = x.shape
        head = d // self.n_head

        def heads(t: Tensor) -> Tensor:  # (B, L, d) -> (B, heads, L, head)
            return t.reshape(batch, length, self.n_head, head).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head)  # (B, heads, L, L)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        mixed = torch.softmax(scores, dim=-1) @ v  # (B, heads, L, head)
        return self.output(mixed.transpose(1, 2).reshape(batch, length, d))


class MLP(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.expand = nn.Linear(d_model, 4 * d_model)
        self.contract = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.contract(F.gelu(self.expand(x)))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then + mlp(LN(x))."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, n_head)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm_attention(x))
        return x + self.mlp(self.norm_mlp(x))


class GPTModule(nn.Module):
    """Token + learned position embeddings → ``n_layer`` pre-LN blocks → LayerNorm → logits."""

    def __init__(
        self, vocab_size: int, context: int, n_layer: int, n_head: int, d_model: int
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:  # (B, L) ids, possibly stored as floats
        ids = tokens.long()
        batch, length = ids.shape
        positions = torch.arange(length, device=ids.device).expand(batch, length)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (B, L, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))  # (B, L, V)


@torch.no_grad()
def gpt2_init(module: nn.Module, generator: torch.Generator) -> None:
    """GPT-2's initialisation: weights N(0, 0.02²) (residual output projections N(0, (0.02/√(2L))²)),
    zero biases, LayerNorms at (1, 0); draws only from ``generator``. Frozen weights (buffers of
    an adapted model, :mod:`fedguard.models.lora`) are initialised alike; adapters are not."""
    n_layer = sum(1 for m in module.modules() if isinstance(m, Block))
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for full_name, p in tensors:
        name = full_name.replace(".frozen.", ".")  # an adapted layer's frozen base weight
        if p is None or "lora_" in name or not p.is_floating_point():
            continue
        if name.endswith("bias"):
            p.zero_()
        elif "norm" in name.split(".")[-2]:
            p.fill_(1.0)
        else:
            std = 0.02
            if name.endswith(("attention.output.weight", "mlp.contract.weight")):
                std /= math.sqrt(2 * max(n_layer, 1))
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)


def sequence_log_probs(module: nn.Module, tokens: Tensor) -> Tensor:
    """Natural-log probability of each next token: ``(B, L-1)`` for ``tokens`` ``(B, L)``.

    Entry ``[b, t]`` is ``log p(tokens[b, t+1] | tokens[b, :t+1])``; the sum over ``t`` is the
    log-likelihood of the sequence after its first token.
    """
    ids = tokens.long()
    logits = module(ids[:, :-1])  # (B, L-1, V)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


__all__ = ["MLP", "Block", "CausalSelfAttention", "GPTModule", "gpt2_init", "sequence_log_probs"]
