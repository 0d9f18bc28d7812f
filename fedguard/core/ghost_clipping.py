"""Per-sample gradient norms and the clipped gradient sum without per-sample gradients.

For a Linear layer with input ``a_i`` (in,) and output gradient ``g_i`` (out,) of sample i, the
per-sample weight gradient is the outer product ``g_i a_iᵀ``, whose squared Frobenius norm is
``‖g_i‖²·‖a_i‖²`` (the bias adds ``‖g_i‖²``): the norm costs O(in + out) per sample instead of
O(in·out) ("ghost norm", Goodfellow 2015; Li et al. 2022). A convolution's per-sample gradient is
``G_i U_iᵀ`` over P positions (``U_i`` the im2col patches); its norm is either computed directly
(O(out·c·P)) or as ``⟨U_iᵀU_i, G_iᵀG_i⟩`` (O(P²(c + out))), whichever is cheaper ("mixed ghost
norm", Bu et al. 2023). The clipped sum ``Σ_i min(1, C/‖∇ℓ_i‖) ∇ℓ_i`` is then one weighted
contraction per layer of the same activations and output gradients (book-keeping: no second
backward pass, Bu et al. 2023) — except for a convolution whose norm is direct and whose
per-sample gradients fit in memory: those are kept, and the clipped sum is their weighted sum
(the per-layer choice between materialising per-sample gradients and ghost norms, Li et al.
2022), which spares a second weight-gradient kernel per layer.

References
----------
Goodfellow. "Efficient Per-Example Gradient Computations." arXiv:1510.01799, 2015.
Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
Learners." ICLR 2022 (ghost clipping).
Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
ICML 2023 (book-keeping, mixed ghost norm).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from fedguard.core.stacked_model import StackedModel, Trace, accumulate_gradients
from fedguard.models.flat import FlatModel

#: ``(trace, output gradient, k clients, ghost)`` → ``‖∇_layer ℓ_i‖²`` of every sample ``(k, batch)``;
#: ``ghost`` forces the ghost (True) or the direct (False) norm where a layer has both, None
#: lets the layer pick the cheaper one.
SquaredNormFn = Callable[[Trace, Tensor, int, "bool | None"], Tensor]

#: samples per call of the direct and ghost convolution norms: their temporaries (per-sample
#: weight gradients, or Gram matrices) stay cache-sized. Measured on one core for the 8→16
#: channel 3×3 convolution on 8×8 maps: 8,000 samples in one call 81 ms CPU, in chunks of 512
#: 28 ms (the non-private weight gradient of the same samples: 17 ms).
_CONV_CHUNK = 512
#: floats of Gram matrices per chunk of the ghost convolution norm (limits ``chunk · P²``)
_GRAM_FLOATS = 1 << 22
#: samples per call of the kept per-sample convolution gradients (channels-last, one group per
#: sample). Measured on one core, 10 clients (LeNet-5: 160 samples; the CNN: 640), ms for the
#: two convolutions with chunks of 32 / 64 / 256 / 512: LeNet-5 3.2 + 3.6 / 2.4 + 3.0 /
#: 2.5 + 3.3 / 2.6 + 3.2; CNN 4.2 + 7.7 / 2.8 + 5.8 / 1.7 + 6.1 / 1.8 + 9.7.
_SAMPLE_CHUNK = 256
#: bytes of per-sample gradients a convolution may keep for the clipped sum (beyond it the norm
#: is computed chunk by chunk and the clipped sum by book-keeping, a second kernel call)
_KEEP_BYTES = 1 << 26


def linear_squared_norms(t: Trace, g: Tensor, k: int, ghost: bool | None = None) -> Tensor:
    """Ghost norm of a Linear layer: ``‖g_i‖²·(‖a_i‖² + 1)`` (the 1 for the bias), ``(k, batch)``.

    References
    ----------
    Goodfellow. "Efficient Per-Example Gradient Computations." arXiv:1510.01799, 2015.
    """
    out_sq = torch.linalg.vector_norm(g, dim=-1).square_()  # (k, batch), one fused pass
    norm = torch.linalg.vector_norm(t.inputs, dim=-1).square_().mul_(out_sq)
    return norm.add_(out_sq) if t.layer.bias is not None else norm


def conv2d_squared_norms(t: Trace, g: Tensor, k: int, ghost: bool | None = None) -> Tensor:
    """Per-sample squared gradient norms of a Conv2d layer, ``(k, batch)``.

    With ``U_i`` (c, P) the sample's im2col patches (c = C·kh·kw) and ``G_i`` (out, P) its output
    gradient over P positions, the weight gradient is ``G_i U_iᵀ``. Its norm is computed either
    directly — the per-sample weight gradients of a chunk of samples, by the convolution's own
    weight-gradient kernel grouped one group per sample, O(out·c·P) — or as the ghost norm
    ``⟨U_iᵀU_i, G_iᵀG_i⟩``, O(P²·(c + out)), whichever costs less (``ghost`` forces one).
    Either way only a chunk's temporaries exist at a time; the clipped sum is left to
    book-keeping (:func:`fedguard.core.stacked_model.accumulate_gradients`).

    References
    ----------
    Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
    Learners." ICLR 2022 (ghost norm of a convolution from unfolded activations).
    Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
    ICML 2023 (mixed ghost norm: per layer the cheaper of the ghost and the direct norm).
    """
    m = t.layer.module
    assert isinstance(m, nn.Conv2d)
    batch = t.inputs.shape[0]
    # (batch, k·C, H, W) may be channels-last: chunks are cut along the batch and reshaped one
    # at a time (a cache-sized copy at most), never the whole activation
    x = t.inputs.unflatten(1, (k, -1))  # (batch, k, C, H, W), a view
    go = g.unflatten(1, (k, m.out_channels))  # (batch, k, out, Ho, Wo)
    positions = go.shape[3] * go.shape[4]
    c = m.weight[0].numel()  # C·kh·kw
    if ghost is None:
        ghost = positions * (c + m.out_channels) < m.out_channels * c
    norms = torch.empty(batch, k, dtype=g.dtype, device=g.device)
    samples = max(1, _GRAM_FLOATS // positions**2) if ghost else _CONV_CHUNK
    rows = max(1, samples // k)  # batch rows per chunk
    for start in range(0, batch, rows):
        stop = min(batch, start + rows)
        xs = x[start:stop].reshape(-1, *x.shape[2:])  # (s, C, H, W)
        gs = go[start:stop].reshape(-1, m.out_channels, positions)  # (s, out, P)
        if ghost:
            patches = F.unfold(xs, m.kernel_size, m.dilation, m.padding, m.stride)  # type: ignore[arg-type]
            gram_in = patches.transpose(1, 2) @ patches  # (s, P, P)
            gram_in.mul_(gs.transpose(1, 2) @ gs)
            norms[start:stop] = gram_in.sum(dim=(1, 2)).view(stop - start, k)
        else:  # the chunk's per-sample weight gradients: one group per sample
            size = xs.shape[0]
            per_sample = conv2d_weight(
                xs.reshape(1, -1, *xs.shape[2:]),
                (size * m.out_channels, *m.weight.shape[1:]),
                gs.reshape(1, -1, *go.shape[3:]),
                m.stride,
                m.padding,  # type: ignore[arg-type]  # string paddings are refused
                m.dilation,
                groups=size,
            )
            norms[start:stop] = per_sample.view(size, -1).pow(2).sum(dim=1).view(stop - start, k)
    if t.layer.bias is not None:
        norms += go.sum(dim=(3, 4)).pow(2).sum(dim=-1)
    return norms.t()


def _samples_as_groups(x: Tensor) -> Tensor:
    """``(rows, k·C, H, W)`` channels-last → ``(1, rows·k·C, H, W)`` channels-last: every
    sample becomes a group of one batch row (one copy, the layout oneDNN's grouped kernels are
    fast on; none for a single row)."""
    rows, channels, h, w = x.shape
    size = rows * channels
    if rows == 1 and x.stride() == (size * h * w, 1, w * size, size):
        return x  # one batch row is already that layout
    grouped = torch.empty(h, w, size, dtype=x.dtype, device=x.device)  # (H, W, rows·k·C)
    grouped.view(h, w, rows, channels).copy_(x.permute(2, 3, 0, 1))
    # the strides of channels_last exactly, the leading one included: oneDNN takes a view
    # whose size-1 batch dimension has another stride for a different layout (2× slower)
    return grouped.as_strided((1, size, h, w), (size * h * w, 1, w * size, size))


def keeps_per_sample_gradients(t: Trace, k: int, ghost: bool | None = None) -> bool:
    """Whether the clipped sum of this layer comes from kept per-sample gradients: a
    convolution whose direct norm is the one used (``ghost`` False, or None and direct is
    cheaper) and whose per-sample weight gradients fit in :data:`_KEEP_BYTES`."""
    m = t.layer.module
    if not isinstance(m, nn.Conv2d) or ghost:
        return False
    c = m.weight[0].numel()
    positions = t.outputs.shape[2] * t.outputs.shape[3]
    if ghost is None and positions * (c + m.out_channels) < m.out_channels * c:
        return False  # the ghost norm is cheaper
    samples = t.inputs.shape[0] * k
    return samples * m.weight.numel() * t.inputs.element_size() <= _KEEP_BYTES


def conv2d_per_sample_gradients(
    t: Trace, g: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-sample squared norms ``(k, batch)``, weight gradients ``(k, batch, out, C, kh, kw)``
    and bias gradients ``(k, batch, out)`` (None without bias) of a Conv2d layer.

    The weight gradients come from the convolution's own weight-gradient kernel with one group
    per sample, on channels-last chunks of :data:`_SAMPLE_CHUNK` samples; a chunk's norms are
    taken while it is in cache. They are stored channels-last, as the kernel writes them: the
    returned tensor is a permuted view whose ``permute(0, 1, 2, 4, 5, 3)`` is contiguous. The
    caller weights them into the clipped sum (:func:`ghost_clipped_blocks`) instead of running
    the kernel again per client.

    References
    ----------
    Li, Tramèr, Liang, Hashimoto. "Large Language Models Can Be Strong Differentially Private
    Learners." ICLR 2022 (per layer, per-sample gradients where cheaper than ghost norms).
    Rochette, Manoel, Tramel. "Efficient Per-Example Gradient Computations in Convolutional
    Neural Networks." arXiv:1912.06015, 2019 (per-example gradients as a grouped convolution).
    """
    m = t.layer.module
    assert isinstance(m, nn.Conv2d)
    batch = t.inputs.shape[0]
    out_ch, c_in, kh, kw = m.weight.shape
    # (k, batch, out·kh·kw·C): channels-last order, so a chunk is copied in contiguous rows
    stored = torch.empty(k, batch, m.weight.numel(), dtype=g.dtype, device=g.device)
    norms = torch.empty(k, batch, dtype=g.dtype, device=g.device)
    rows = max(1, _SAMPLE_CHUNK // k)  # batch rows per chunk
    for start in range(0, batch, rows):
        stop = min(batch, start + rows)
        samples = (stop - start) * k
        per_sample = conv2d_weight(
            _samples_as_groups(t.inputs[start:stop]),
            (samples * out_ch, c_in, kh, kw),
            _samples_as_groups(g[start:stop]),
            m.stride,
            m.padding,  # type: ignore[arg-type]  # string paddings are refused
            m.dilation,
            groups=samples,
        )  # (rows·k·out, C, kh, kw), channels-last from oneDNN: the permute is then a view
        chunk = stored[:, start:stop]  # (k, rows, size)
        chunk.copy_(per_sample.permute(0, 2, 3, 1).reshape(stop - start, k, -1).transpose(0, 1))
        torch.linalg.vector_norm(chunk, dim=-1, out=norms[:, start:stop]).square_()
    weights = stored.view(k, batch, out_ch, kh, kw, c_in).permute(0, 1, 2, 5, 3, 4)
    bias = None
    if t.layer.bias is not None:
        bias = g.sum(dim=(2, 3)).view(batch, k, out_ch).transpose(0, 1)  # (k, batch, out)
        norms += torch.linalg.vector_norm(bias, dim=-1).square_()
    return norms, weights, bias


#: the per-sample norm of each layer type with parameters (a subclass uses its base's entry);
#: other modules add theirs with :func:`register_squared_norms`
SQUARED_NORMS: dict[type[nn.Module], SquaredNormFn] = {
    nn.Linear: linear_squared_norms,
    nn.Conv2d: conv2d_squared_norms,
}


def register_squared_norms(layer: type[nn.Module], fn: SquaredNormFn) -> None:
    """Use ``fn`` for the per-sample gradient norms of ``layer`` modules."""
    SQUARED_NORMS[layer] = fn


def squared_norms_of(module: nn.Module) -> SquaredNormFn:
    """The registered per-sample norm of ``module``'s type (nearest base class first)."""
    for cls in type(module).__mro__:
        fn = SQUARED_NORMS.get(cls)
        if fn is not None:
            return fn
    raise TypeError(f"no per-sample gradient norm is registered for {type(module).__name__}.")


def per_sample_squared_norms(
    traces: list[Trace], grads: tuple[Tensor, ...], k: int, ghost_conv: bool | None = None
) -> Tensor:
    """``‖∇_θ ℓ_i‖²`` of every sample ``(k, batch)`` from the layers' inputs and output gradients.

    ``ghost_conv`` forces the ghost (True) or direct (False) norm of convolutions; None picks
    the cheaper per layer.
    """
    total: Tensor | None = None
    for t, g in zip(traces, grads, strict=True):
        norm = squared_norms_of(t.layer.module)(t, g, k, ghost_conv)
        total = norm if total is None else total.add_(norm)
    assert total is not None
    return total


_MACS: weakref.WeakKeyDictionary[StackedModel, dict[tuple[int, ...], int]] = (
    weakref.WeakKeyDictionary()
)


def macs_per_sample(plan: StackedModel, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample's forward pass through the layers with weights (a
    Linear layer ``in·out``, a convolution ``out·C·kh·kw·positions``); cached per plan."""
    cache = _MACS.setdefault(plan, {})
    key = tuple(int(s) for s in input_shape)
    if key not in cache:
        with torch.no_grad():
            params = plan.blocks(plan.model.initial_params()[None])
            x = torch.zeros(1, 1, *key, dtype=params[0].dtype, device=params[0].device)
            _, traces = plan.forward(params, x, trace=True)
        total = 0
        for t in traces:
            assert t.layer.weight is not None
            # convolution outputs are (batch, k·out, H, W): H·W positions per sample
            positions = t.outputs.shape[2] * t.outputs.shape[3] if t.client_minor else 1
            total += params[t.layer.weight][0].numel() * positions
        cache[key] = total
    return cache[key]


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
        kept: dict[int, tuple[Tensor, Tensor | None]] = {}  # trace → per-sample gradients
        total: Tensor | None = None
        for i, (t, g) in enumerate(zip(traces, grads, strict=True)):
            if keeps_per_sample_gradients(t, k, ghost_conv):
                norm, weights, bias = conv2d_per_sample_gradients(t, g, k)
                kept[i] = (weights, bias)
            else:
                norm = squared_norms_of(t.layer.module)(t, g, k, ghost_conv)
            total = norm if total is None else total.add_(norm)
        assert total is not None
        factor = torch.clamp(clip_norm / total.sqrt_().clamp_min_(1e-30), max=1.0).mul_(mask)
        rest = [i for i in range(len(traces)) if i not in kept]
        accumulate_gradients([traces[i] for i in rest], tuple(grads[i] for i in rest), factor, out)
        weighting = factor.unsqueeze(1)  # (k, 1, batch)
        for i, (weights, bias) in kept.items():
            layer = traces[i].layer
            assert layer.weight is not None
            stored = weights.permute(0, 1, 2, 4, 5, 3)  # (k, batch, out, kh, kw, C) contiguous
            total_cl = torch.bmm(weighting, stored.reshape(k, weights.shape[1], -1))
            out[layer.weight].copy_(total_cl.view(k, *stored.shape[2:]).permute(0, 1, 4, 2, 3))
            if bias is not None and layer.bias is not None:
                torch.bmm(weighting, bias, out=out[layer.bias].view(k, 1, -1))
    return out


def module_ghost_clipped_sums(
    model: FlatModel, params: Tensor, x: Tensor, y: Tensor, mask: Tensor, clip_norm: float
) -> Tensor | None:
    """Ghost clipping of models outside the stacked plan whose layers are Linear (on
    sequences), Embedding and LayerNorm, each applied once (the GPT; per client):
    :mod:`fedguard.core.ghost_norms_text`. None where it does not apply."""
    from fedguard.core.ghost_norms_text import clipped_gradient_sums

    return clipped_gradient_sums(model, params, x, y, mask, clip_norm)


__all__ = [
    "SQUARED_NORMS",
    "conv2d_per_sample_gradients",
    "conv2d_squared_norms",
    "ghost_clipped_blocks",
    "ghost_clipped_gradient_sum",
    "keeps_per_sample_gradients",
    "linear_squared_norms",
    "module_ghost_clipped_sums",
    "per_sample_squared_norms",
    "register_squared_norms",
    "squared_norms_of",
]
