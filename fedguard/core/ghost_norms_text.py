"""Per-sample gradient norms of sequence layers without per-sample gradients (ghost norms), and
ghost clipping of any model built from Linear, Embedding and LayerNorm layers (the GPT).

For sample i with T positions, a layer's per-sample weight gradient is a sum over positions:

* Linear (input ``a_t`` (in,), output gradient ``g_t`` (out,)): ``∇W_i = Σ_t g_t a_tᵀ`` with
  ``‖∇W_i‖² = ⟨A_i A_iᵀ, G_i G_iᵀ⟩`` (ghost, O(T²(in + out))) or directly (O(T·in·out)),
  whichever is cheaper; the bias adds ``‖Σ_t g_t‖²``;
* Embedding (ids ``x_t``): ``∇E_i = Σ_t e_{x_t} g_tᵀ``, so
  ``‖∇E_i‖² = Σ_{t,s} [x_t = x_s] ⟨g_t, g_s⟩`` — O(T²·d) instead of O(V·d);
* LayerNorm (normalised input ``x̂_t``): ``∇γ_i = Σ_t g_t ⊙ x̂_t``, ``∇β_i = Σ_t g_t`` (O(T·d)).

:func:`ghost_clipped_gradient_sum` records each layer's input and output with forward hooks,
takes the output gradients of the summed loss in one backward pass, sums the layers' squared
norms, and gets ``Σ_i min(1, C/‖∇ℓ_i‖)·∇ℓ_i`` from a second backward pass of the reweighted loss
(Li et al.'s ghost clipping) — the same quantity as the per-sample (``vmap``) reference
:func:`fedguard.core.local_training.clipped_gradient_sum` and Opacus, without forming the
(batch × d) per-sample gradients.

References
----------
Goodfellow. "Efficient Per-Example Gradient Computations." arXiv:1510.01799, 2015.
Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
Learners." ICLR 2022 (ghost clipping of sequence Linear and Embedding layers).
Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
ICML 2023 (choosing the ghost or the direct norm per layer).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedguard.models.flat import FlatModel
from fedguard.models.losses import per_sample_cross_entropy

SUPPORTED = (nn.Linear, nn.Embedding, nn.LayerNorm)
#: below this many trainable parameters, per-sample gradients (vmap) are cheaper than ghost
#: clipping's second backward pass (benchmarks/bench_language.py, 2b: vmap 13% faster for LoRA
#: at d = 4,096, ghost 1.6× faster for full fine-tuning at d = 471 k)
GHOST_MIN_PARAMETERS = 65_536


def _sequence(t: Tensor) -> Tensor:
    """``(B, T, features)``: positions of a sample flattened, one position for 2-D inputs."""
    return t.unsqueeze(1) if t.dim() == 2 else t.reshape(t.shape[0], -1, t.shape[-1])


def linear_squared_norms(inputs: Tensor, grads: Tensor, bias: bool) -> Tensor:
    """``(B,)`` squared norms of a Linear layer's per-sample (weight, bias) gradients."""
    a, g = _sequence(inputs), _sequence(grads)  # (B, T, in), (B, T, out)
    positions, width_in, width_out = a.shape[1], a.shape[2], g.shape[2]
    if positions * positions * (width_in + width_out) < positions * width_in * width_out:
        norms = ((a @ a.transpose(1, 2)) * (g @ g.transpose(1, 2))).sum(dim=(1, 2))
    else:
        norms = torch.einsum("bto,bti->boi", g, a).pow(2).sum(dim=(1, 2))
    if bias:
        norms = norms + g.sum(dim=1).pow(2).sum(dim=-1)
    return norms


def embedding_squared_norms(ids: Tensor, grads: Tensor) -> Tensor:
    """``(B,)`` squared norms of an Embedding's per-sample gradients: positions holding the same
    id add their output gradients into one row of the table."""
    x = ids.reshape(ids.shape[0], -1)  # (B, T)
    g = grads.reshape(x.shape[0], x.shape[1], -1)  # (B, T, d)
    same = (x[:, :, None] == x[:, None, :]).to(g.dtype)  # (B, T, T)
    return ((g @ g.transpose(1, 2)) * same).sum(dim=(1, 2))


def layer_norm_squared_norms(
    inputs: Tensor, grads: Tensor, norm: nn.LayerNorm, weight: bool, bias: bool
) -> Tensor:
    """``(B,)`` squared norms of a LayerNorm's per-sample (γ, β) gradients."""
    normalized = F.layer_norm(inputs, norm.normalized_shape, None, None, norm.eps)
    b = inputs.shape[0]
    g = grads.reshape(b, -1, *norm.normalized_shape).flatten(2)  # (B, T, d)
    total = torch.zeros(b, dtype=grads.dtype, device=grads.device)
    if weight:
        total = total + (g * normalized.reshape(g.shape)).sum(dim=1).pow(2).sum(dim=-1)
    if bias:
        total = total + g.sum(dim=1).pow(2).sum(dim=-1)
    return total


def _trainable(model: FlatModel) -> dict[nn.Module, set[str]] | None:
    """Each layer's own trainable parameter names, or None if a layer is not supported."""
    names = set(model.layout.names)
    out: dict[nn.Module, set[str]] = {}
    for prefix, m in model.module.named_modules():
        own = {n for n, _ in m.named_parameters(recurse=False)}
        if not own:
            continue
        if type(m) not in SUPPORTED or not {f"{prefix}.{n}".lstrip(".") for n in own} <= names:
            return None
        out[m] = own
    return out


def supports(model: FlatModel) -> bool:
    """Whether :func:`ghost_clipped_gradient_sum` handles every trainable layer of ``model``."""
    return _trainable(model) is not None


def ghost_clipped_gradient_sum(
    model: FlatModel,
    params: Tensor,  # (d,)
    x: Tensor,  # (B, *input)
    y: Tensor,  # (B,) or (B, T)
    mask: Tensor,  # (B,) 1 for real samples, 0 for padding
    clip_norm: float,
) -> Tensor:
    """``Σ_i mask_i·min(1, C/‖∇ℓ_i‖)·∇ℓ_i`` ``(d,)`` for one client, by ghost norms."""
    layers = _trainable(model)
    if layers is None:
        raise ValueError("ghost clipping supports models of Linear, Embedding, LayerNorm layers")
    flat = params.detach().clone().requires_grad_(True)
    records: list[tuple[nn.Module, Tensor, Tensor]] = []

    def record(m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        records.append((m, inputs[0], output))

    handles = [m.register_forward_hook(record) for m in layers]
    try:
        logits = functional_call(model.module, model.layout.unflatten(flat), (x,))
    finally:
        for h in handles:
            h.remove()
    if len({id(m) for m, _, _ in records}) != len(records):
        raise ValueError("ghost clipping needs every layer to be applied once per forward pass")
    losses = per_sample_cross_entropy(logits, y)  # (B,)
    outputs = [out for _, _, out in records]
    grads = torch.autograd.grad((losses * mask).sum(), outputs, retain_graph=True)
    with torch.no_grad():
        squared = torch.zeros_like(losses)
        for (m, inputs, _), g in zip(records, grads, strict=True):
            squared += _layer_norms(m, inputs, g, layers[m])
        factor = torch.clamp(clip_norm / squared.sqrt().clamp_min(1e-30), max=1.0) * mask
    (clipped,) = torch.autograd.grad((losses * factor).sum(), flat)
    return clipped


_APPLIED_ONCE: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def applies_each_layer_once(model: FlatModel, x: Tensor) -> bool:
    """Whether one forward pass applies every trainable layer exactly once (a recurrent model
    applies its cells at every time step: its per-sample gradient sums over uses, which the
    per-layer norms above do not cover). Checked once per module on the sample ``x`` (1, ...)."""
    module = model.module
    if module not in _APPLIED_ONCE:
        layers = _trainable(model)
        calls: list[nn.Module] = []
        if layers is not None:
            handles = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in layers]
            try:
                with torch.no_grad():
                    functional_call(module, model.layout.unflatten(model.initial_params()), (x,))
            finally:
                for h in handles:
                    h.remove()
        once = layers is not None and sorted(map(id, calls)) == sorted(map(id, layers))
        _APPLIED_ONCE[module] = once
    return _APPLIED_ONCE[module]


def clipped_gradient_sums(
    model: FlatModel,
    params: Tensor,  # (k, d)
    x: Tensor,  # (k, B, *input)
    y: Tensor,  # (k, B) or (k, B, T)
    mask: Tensor,  # (k, B)
    clip_norm: float,
) -> Tensor | None:
    """:func:`ghost_clipped_gradient_sum` of each of k clients ``(k, d)``, or None when the
    model is not made of supported layers each applied once, or is too small for ghost norms
    to pay (then use the ``vmap`` path)."""
    if model.layout.dim < GHOST_MIN_PARAMETERS or not applies_each_layer_once(model, x[0, :1]):
        return None
    return torch.stack(
        [
            ghost_clipped_gradient_sum(model, params[c], x[c], y[c], mask[c], clip_norm)
            for c in range(x.shape[0])
        ]
    )


def _layer_norms(m: nn.Module, inputs: Tensor, g: Tensor, own: set[str]) -> Tensor:
    kernels: dict[type, Callable[[], Tensor]] = {
        nn.Linear: lambda: linear_squared_norms(inputs, g, "bias" in own),
        nn.Embedding: lambda: embedding_squared_norms(inputs, g),
        nn.LayerNorm: lambda: layer_norm_squared_norms(
            inputs,
            g,
            m,  # type: ignore[arg-type]
            "weight" in own,
            "bias" in own,
        ),
    }
    return kernels[type(m)]()


__all__ = [
    "applies_each_layer_once",
    "clipped_gradient_sums",
    "embedding_squared_norms",
    "ghost_clipped_gradient_sum",
    "layer_norm_squared_norms",
    "linear_squared_norms",
    "supports",
]
