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
``nn.Embedding`` and ``nn.LayerNorm`` layers and the explicit attention (in
:mod:`fedguard.models.transformer`) work in both, with
no fused kernels, dropout or caches, and no dependency that is not installed.

References
----------
Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019 (pre-LN
blocks, learned positional embeddings, initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec
from fedguard.models.transformer import (
    Block,
    CausalSelfAttention,
    GPTModule,
    gpt2_init,
    sequence_log_probs,
)

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

            with torch.device("meta"):  # shapes only: no memory, no random draws
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


__all__ = [
    "GPT",
    "Block",
    "CausalSelfAttention",
    "GPTModule",
    "gpt2_init",
    "sequence_log_probs",
]
