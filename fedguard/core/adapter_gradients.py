"""Every client's adapter gradient of a step in one autograd pass (LoRA / FFA-LoRA on the GPT).

An adapted GPT (:mod:`fedguard.models.lora`) trains only its low-rank factors; every other
weight is a frozen buffer that all clients share. So the k clients of a step run as *one* model
on their k·B windows: every frozen layer is one product over all clients' tokens, and each
adapted layer adds its clients' own low-rank terms by batched products
(:func:`fedguard.models.lora.stacked_low_rank`, chosen when the adapter weights it is handed
carry a client dimension). One backward pass of the weighted loss summed over clients gives
each client's gradient, since client c's loss depends only on its own adapter copy.

Why not ``vmap(grad)`` (the generic path, kept as the reference with ``engine="vmap"``): on a CPU
it ran one step of 10 clients no faster than the sequential trainer's ten steps — the batching
rules reshape, copy and sum the per-client activations around every product — while this pass
is plain autograd on the same products the sequential trainer performs, with k times the rows.

References
----------
Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from fedguard.models.flat import FlatModel
from fedguard.models.lora import LoRALinear
from fedguard.models.losses import per_sample_cross_entropy
from fedguard.models.transformer import GPTModule

#: ``gradient(params, x (k, batch, *input), y, weight (k, batch), out)`` as in local_training
GradientFn = Callable[[list[Tensor], Tensor, Tensor, Tensor, list[Tensor]], list[Tensor]]

_COVERED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def covered(model: FlatModel) -> bool:
    """An adapted GPT whose only trainable tensors are LoRA factors (LoRA or FFA-LoRA)."""
    module = model.module
    if module not in _COVERED:
        names = model.layout.names
        _COVERED[module] = (
            isinstance(module, GPTModule)
            and any(isinstance(m, LoRALinear) for m in module.modules())
            and len(names) > 0
            and all(n.endswith((".lora_A.weight", ".lora_B.weight")) for n in names)
        )
    return _COVERED[module]


def adapter_gradient_fn(model: FlatModel) -> GradientFn | None:
    """The one-pass gradient function for an adapted GPT, or None (not :func:`covered`).

    It returns ``Σ_j weight_cj ∇ℓ(θ_c; x_cj, y_cj)`` of every client c of the step as one
    ``(k, d)`` block — the quantity of the trainers' other gradient paths; padded samples have
    weight 0 and contribute nothing.
    """
    if not covered(model):
        return None
    module, layout = model.module, model.layout

    def gradient(
        params: list[Tensor], x: Tensor, y: Tensor, weight: Tensor, out: list[Tensor]
    ) -> list[Tensor]:
        (flat,) = params  # (k, d)
        k, batch = x.shape[0], x.shape[1]
        leaf = flat.detach().requires_grad_()
        stacked = layout.unflatten(leaf)  # (k, *shape) views: one adapter copy per client
        logits = functional_call(module, stacked, (x.reshape(k * batch, *x.shape[2:]),))
        losses = per_sample_cross_entropy(logits, y.reshape(k * batch, *y.shape[2:]))
        loss = (losses.view(k, batch) * weight).sum()
        (grad,) = torch.autograd.grad(loss, leaf)  # (k, d)
        return [grad]

    return gradient


__all__ = ["adapter_gradient_fn", "covered"]
