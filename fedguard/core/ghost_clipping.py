"""Per-sample gradient norms and the clipped gradient sum without per-sample gradients.

For a Linear layer with input ``a_i`` (in,) and output gradient ``g_i`` (out,) of sample i, the
per-sample weight gradient is the outer product ``g_i a_iᵀ``, whose squared Frobenius norm is
``‖g_i‖²·‖a_i‖²`` (the bias adds ``‖g_i‖²``): the norm costs O(in + out) per sample instead of
O(in·out) ("ghost norm", Goodfellow 2015; Li et al. 2022). A convolution's per-sample gradient is
``G_i U_iᵀ`` over P positions (``U_i`` the im2col patches); its norm is either computed directly
(O(out·c·P)) or as ``⟨U_iᵀU_i, G_iᵀG_i⟩`` (O(P²(c + out))), whichever is cheaper ("mixed ghost
norm", Bu et al. 2023). The clipped sum ``Σ_i min(1, C/‖∇ℓ_i‖) ∇ℓ_i`` is then one weighted
contraction per layer of the same activations and output gradients (book-keeping: no second
backward pass, Bu et al. 2023).

References
----------
Goodfellow. "Efficient Per-Example Gradient Computations." arXiv:1510.01799, 2015.
Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
Learners." ICLR 2022 (ghost clipping).
Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
ICML 2023 (book-keeping, mixed ghost norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from fedguard.core.stacked_model import (
    StackedModel,
    Trace,
    accumulate_gradients,
    output_gradients,
    unfolded_inputs,
)
from fedguard.models.flat import FlatModel


def per_sample_squared_norms(
    traces: list[Trace], grads: tuple[Tensor, ...], k: int, ghost_conv: bool | None = None
) -> Tensor:
    """``‖∇_θ ℓ_i‖²`` of every sample ``(k, batch)`` from the layers' inputs and output gradients.

    ``ghost_conv`` forces the ghost (True) or direct (False) norm of convolutions; None picks
    the cheaper per layer.
    """
    total: Tensor | None = None
    for t, g in zip(traces, grads, strict=True):
        m = t.layer.module
        if isinstance(m, nn.Linear):
            out_sq = g.pow(2).sum(dim=-1)  # (k, batch)
            norm = out_sq * t.inputs.pow(2).sum(dim=-1)
            if t.layer.bias is not None:
                norm = norm + out_sq
        else:
            assert isinstance(m, nn.Conv2d)
            go = output_gradients(t, g, k)  # (batch, k, out, positions)
            out, positions = go.shape[2], go.shape[3]
            c = m.weight[0].numel()  # C·kh·kw
            use_ghost = positions * (c + out) < out * c if ghost_conv is None else ghost_conv
            if use_ghost:
                patches = unfolded_inputs(t, k)  # (batch, k, c, positions)
                gram_in = patches.transpose(-1, -2) @ patches  # (batch, k, P, P)
                gram_out = go.transpose(-1, -2) @ go
                norm = (gram_in * gram_out).sum(dim=(-1, -2))
            else:  # per-sample weight gradients of this layer: one group per (sample, client)
                batch = go.shape[0]
                per_sample = conv2d_weight(
                    t.inputs.reshape(1, -1, *t.inputs.shape[2:]),
                    (batch * k * out, *m.weight.shape[1:]),
                    g.reshape(1, -1, *g.shape[2:]),
                    m.stride,
                    m.padding,  # type: ignore[arg-type]  # string paddings are refused
                    m.dilation,
                    groups=batch * k,
                )
                norm = per_sample.view(batch, k, -1).pow(2).sum(dim=-1)
            if t.layer.bias is not None:
                norm = norm + go.sum(dim=-1).pow(2).sum(dim=-1)
            norm = norm.t()  # (k, batch)
        total = norm if total is None else total + norm
    assert total is not None
    return total


def ghost_clipped_gradient_sum(
    plan: StackedModel,
    params: Tensor,  # (k, d)
    x: Tensor,  # (k, batch, *input)
    y: Tensor,  # (k, batch)
    mask: Tensor,  # (k, batch) 1 for real samples, 0 for padding
    clip_norm: float,
    ghost_conv: bool | None = None,
) -> Tensor:
    """``Σ_j clip_C(∇ℓ(θ_c; x_cj, y_cj))`` over each client's masked batch, ``(k, d)``.

    The same quantity as :func:`fedguard.core.local_training.clipped_gradient_sum` (the
    ``vmap`` reference, and Opacus), from one forward and one backward pass.
    """
    out = [torch.empty_like(b) for b in plan.blocks(params)]
    blocks = plan.blocks(params)
    return plan.join(ghost_clipped_blocks(plan, blocks, x, y, mask, clip_norm, out, ghost_conv))


def ghost_clipped_blocks(
    plan: StackedModel,
    params: Sequence[Tensor],  # blocks (k, *shape)
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    clip_norm: float,
    out: list[Tensor],  # contiguous blocks (k, *shape) written in place
    ghost_conv: bool | None = None,
) -> list[Tensor]:
    """:func:`ghost_clipped_gradient_sum` on parameter blocks (what the trainer keeps)."""
    k, batch = x.shape[0], x.shape[1]
    logits, traces = plan.forward(params, x, trace=True)
    losses = F.cross_entropy(logits.reshape(k * batch, -1), y.reshape(-1), reduction="none").view(
        k, batch
    )
    grads = torch.autograd.grad((losses * mask).sum(), [t.outputs for t in traces])
    with torch.no_grad():
        norms = per_sample_squared_norms(traces, grads, k, ghost_conv).sqrt()  # (k, batch)
        factor = torch.clamp(clip_norm / norms.clamp_min(1e-30), max=1.0) * mask
    return accumulate_gradients(traces, grads, factor, out)


def module_ghost_clipped_sums(
    model: FlatModel, params: Tensor, x: Tensor, y: Tensor, mask: Tensor, clip_norm: float
) -> Tensor | None:
    """Ghost clipping of models outside the stacked plan whose layers are Linear (on
    sequences), Embedding and LayerNorm, each applied once (the GPT; per client):
    :mod:`fedguard.core.ghost_norms_text`. None where it does not apply."""
    from fedguard.core.ghost_norms_text import clipped_gradient_sums

    return clipped_gradient_sums(model, params, x, y, mask, clip_norm)


__all__ = [
    "ghost_clipped_blocks",
    "ghost_clipped_gradient_sum",
    "module_ghost_clipped_sums",
    "per_sample_squared_norms",
]
