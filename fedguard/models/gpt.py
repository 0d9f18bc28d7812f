"""A small decoder-only transformer (GPT-2 style) for next-token prediction on byte tokens.

Public API
----------
``GPT(n_layer=2, n_head=4, d_model=128, context=64)`` : model spec, registered as ``gpt``
    ``build(input_shape=(L,), n_classes=V)`` → :class:`GPTModule`; ``L ≤ context``.
``GPTModule(vocab_size, context, n_layer, n_head, d_model)`` : ``nn.Module``
    ``forward(tokens (B, L) long or float ids) -> logits (B, L, V)``. Parameter names:
    ``token_embedding``, ``position_embedding``, ``blocks.{i}.norm_attention``,
    ``blocks.{i}.attention.{query,key,value,output}``, ``blocks.{i}.norm_mlp``,
    ``blocks.{i}.mlp.{expand,contract}``, ``final_norm``, ``head`` (each Linear has
    ``.weight`` and ``.bias``; the head has no bias).
``sequence_log_probs(module, tokens (B, L)) -> (B, L-1)``
    ``log p(tokens[:, t+1] | tokens[:, :t+1])`` per position (natural log).
``gpt2_init(module, generator)``
    GPT-2's initialisation (N(0, 0.02), residual projections scaled by 1/√(2·n_layer)).

Why fedguard's own and not a library model (``transformers.GPT2Model``): the trainers call the
model functionally on stacked parameter copies (``torch.func.functional_call`` under ``vmap``)
and Opacus computes per-sample gradients with module hooks; the plain ``nn.Linear``,
``nn.Embedding`` and ``nn.LayerNorm`` layers and the explicit attention below work in both, with
no fused kernels, dropout or caches, and no dependency that is not installed.

References
----------
Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019 (pre-LN
blocks, learned positional embeddings, initialisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec


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


ADAPTERS = ("none", "lora", "ffa_lora")


@dataclass(frozen=True)
class GPT(ModelSpec):
    """Decoder-only transformer: ``n_layer`` blocks of ``n_head`` heads, width ``d_model``,
    at most ``context`` tokens (≈ 0.5 M parameters by default on the 259-token byte vocabulary).

    ``pretrain_steps`` > 0 starts from the base model pre-trained that many steps on the public
    corpus (:mod:`fedguard.text.pretrain`, cached); 0 starts from GPT-2's random initialisation.
    ``adapter``: ``"none"`` trains every weight (full fine-tuning); ``"lora"`` trains and sends
    only rank-``lora_rank`` adapters (scale ``lora_alpha / lora_rank``) on the Linear layers
    matching ``lora_targets``, the rest frozen; ``"ffa_lora"`` also freezes every A at its
    random initialisation (only B is trained and sent). See :mod:`fedguard.models.lora`.
    """

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    context: int = 64
    pretrain_steps: int = 0
    adapter: str = "none"
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lora_targets: tuple[str, ...] = ("query", "value")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        require(self.n_layer >= 1, "model.n_layer", "an integer ≥ 1")
        require(self.n_head >= 1, "model.n_head", "an integer ≥ 1")
        require(
            self.d_model >= 1 and self.d_model % self.n_head == 0,
            "model.d_model",
            f"a positive multiple of model.n_head ({self.n_head})",
        )
        require(self.context >= 2, "model.context", "an integer ≥ 2")
        require(self.pretrain_steps >= 0, "model.pretrain_steps", "an integer ≥ 0")
        require(self.adapter in ADAPTERS, "model.adapter", f"one of {', '.join(ADAPTERS)}")
        if self.adapter != "none":  # bad targets or ranks fail here, before any training
            from fedguard.text.tokenizer import VOCAB_SIZE

            self._adapted(self._skeleton(VOCAB_SIZE))

    def _skeleton(self, vocab_size: int) -> GPTModule:
        return GPTModule(vocab_size, self.context, self.n_layer, self.n_head, self.d_model)

    def _adapted(self, module: nn.Module) -> nn.Module:
        from fedguard.models.lora import adapt

        train_a = self.adapter == "lora"
        return adapt(module, self.lora_targets, self.lora_rank, self.lora_alpha, train_a)

    def pretrain_config(self) -> PretrainConfig:
        from fedguard.text.pretrain import PretrainConfig

        return PretrainConfig(
            self.n_layer, self.n_head, self.d_model, self.context, self.pretrain_steps
        )

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        if len(input_shape) != 1 or input_shape[0] > self.context:
            raise ConfigError(
                f"model 'gpt' needs token windows shaped (length,) with length ≤ model.context "
                f"({self.context}); this dataset's samples have shape {tuple(input_shape)}."
            )
        if self.pretrain_steps:
            from fedguard.text.pretrain import base_model
            from fedguard.text.tokenizer import VOCAB_SIZE

            if n_classes != VOCAB_SIZE:
                raise ConfigError(
                    f"model.pretrain_steps needs the byte-token dataset 'text' ({VOCAB_SIZE} "
                    f"tokens); this dataset has {n_classes} classes."
                )
            module: nn.Module = base_model(self.pretrain_config())
        else:
            module = self._skeleton(n_classes)
        return self._adapted(module) if self.adapter != "none" else module

    def initialize(self, module: nn.Module) -> None:
        """GPT-2's initialisation (unless pre-trained), then the adapters' (A random, B = 0),
        all from the global RNG the caller seeded with the run's keyed stream."""
        from fedguard.models.lora import init_adapters

        generator = torch.Generator().manual_seed(torch.initial_seed())
        if not self.pretrain_steps:
            gpt2_init(module, generator)
        init_adapters(module, generator)


if TYPE_CHECKING:
    from fedguard.text.pretrain import PretrainConfig


__all__ = ["GPT", "GPTModule", "gpt2_init", "sequence_log_probs"]
