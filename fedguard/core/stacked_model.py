"""A ``nn.Sequential`` evaluated for many clients at once on stacked flat parameters.

``StackedModel`` runs the forward pass of k clients' models in one go — ``Linear`` as a batched
matrix product over clients, ``Conv2d`` as one grouped convolution (one group per client) —
and computes weight gradients by *book-keeping*: one autograd pass gives every layer's output
gradient G, and each layer's weight gradient is then the contraction of G with the layer's
stored input A (for a Linear layer ``Σ_i w_i G_iᵀ A_i``). The same two tensors give per-sample
gradient norms without forming per-sample gradients (ghost norms, see
:mod:`fedguard.core.ghost_clipping`), so plain training and DP-SGD share this code.

Why not ``torch.func.vmap(grad(...))``: its fixed cost per call dominates small cohorts and its
first call imports ``torch._dynamo`` (about a second); plain autograd on the stacked
parameters does neither. Models with other layers return ``None`` from :meth:`StackedModel.of`
and the trainers fall back to the ``vmap`` path.

References
----------
Bu, Wang, Zha, Karypis. "Differentially Private Optimization on Large Model at Small Cost."
ICML 2023 (book-keeping: weight gradients and per-sample norms from activations and output
gradients of one backward pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from fedguard.models.flat import FlatModel

#: parameter-free layers applied element-wise (any shape, no randomness, no state)
ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SiLU,
    nn.Softplus,
    nn.Identity,
)
POOLING = (nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class StackedLayer:
    """One layer of the plan: its module and the indices of its parameter blocks."""

    module: nn.Module
    weight: int | None = None
    bias: int | None = None


@dataclass
class Trace:
    """What one layer with parameters saw: its input and its output (which requires grad).

    ``client_minor``: the tensors are laid out ``(batch, k, ...)`` (convolutions) rather than
    ``(k, batch, ...)``.
    """

    layer: StackedLayer
    inputs: Tensor
    outputs: Tensor
    client_minor: bool


class StackedModel:
    """The plan of a supported ``nn.Sequential``; build it with :meth:`of`."""

    def __init__(self, model: FlatModel, layers: tuple[StackedLayer, ...], n_classes: int) -> None:
        self.model = model
        self.layers = layers
        self.n_classes = n_classes
        self.dim = model.layout.dim
        self._sizes = list(model.layout.sizes)  # computed once: this runs several times a step
        self._shapes = model.layout.shapes
        #: numbers all layers output for one sample (sizes the groups of clients that fit in cache)
        self.activation_elements = 0

    @staticmethod
    def of(model: FlatModel, input_shape: tuple[int, ...]) -> StackedModel | None:
        """The plan of ``model``, or None if a layer (or the way it is used) is not supported."""
        module = model.module
        if type(module) is not nn.Sequential or any(True for _ in module.buffers()):
            return None
        offsets = {name: i for i, name in enumerate(model.layout.names)}
        layers = []
        used: set[str] = set()
        for index, child in _leaves(module):
            if isinstance(child, nn.Linear):
                layers.append(
                    StackedLayer(child, offsets[f"{index}.weight"], offsets.get(f"{index}.bias"))
                )
            elif isinstance(child, nn.Conv2d):
                if (
                    child.groups != 1
                    or child.padding_mode != "zeros"
                    or isinstance(child.padding, str)
                ):
                    return None
                layers.append(
                    StackedLayer(child, offsets[f"{index}.weight"], offsets.get(f"{index}.bias"))
                )
            elif isinstance(child, ELEMENTWISE + POOLING) or (
                isinstance(child, nn.Flatten) and child.start_dim == 1 and child.end_dim == -1
            ):
                layers.append(StackedLayer(child))
            else:
                return None
            used.update(n for n in (f"{index}.weight", f"{index}.bias") if n in offsets)
        if used != set(model.layout.names):
            return None  # shared or unexpected parameters
        plan = StackedModel(model, _pool_before_relu(layers), 0)
        try:  # a dry run settles shapes (e.g. a Linear fed an unflattened image is refused)
            with torch.no_grad():
                params = model.initial_params()
                x = torch.zeros(1, 1, *input_shape, dtype=params.dtype, device=params.device)
                logits, _ = plan.forward(plan.blocks(params[None]), x)
        except _Unsupported:
            return None
        if logits.dim() != 3:
            return None
        plan.n_classes = int(logits.shape[-1])
        plan.activation_elements = _activation_elements(module, x[0])
        return plan

    # ------------------------------------------------------------------ parameter blocks

    def blocks(self, flat: Tensor) -> list[Tensor]:
        """Views ``(k, *shape)`` of each parameter of the stacked flat vectors ``flat`` (k, d)."""
        lead = flat.shape[:-1]
        chunks = torch.split(flat, self._sizes, dim=-1)
        return [c.view(*lead, *s) for c, s in zip(chunks, self._shapes, strict=True)]

    def stacked_copies(self, flat: Tensor, n: int) -> list[Tensor]:
        """``n`` contiguous copies of the flat vector ``flat`` (d,), one block per parameter."""
        return [b.expand(n, *b.shape).clone() for b in self.model.layout.unflatten(flat).values()]

    @staticmethod
    def join(blocks: Sequence[Tensor]) -> Tensor:
        """The flat ``(k, d)`` of parameter blocks."""
        return torch.cat([b.reshape(b.shape[0], -1) for b in blocks], dim=1)

    # ------------------------------------------------------------------ forward

    def forward(
        self, params: Sequence[Tensor], x: Tensor, trace: bool = False
    ) -> tuple[Tensor, list[Trace]]:
        """Logits ``(k, batch, classes)`` of parameter blocks ``params`` (each ``(k, *shape)``)
        on ``x`` (k, batch, *input).

        With ``trace`` the output of the first layer with parameters is made to require grad
        (parameters never do), so one ``autograd.grad`` over the traced outputs yields every
        layer's output gradient.
        """
        k, batch = x.shape[0], x.shape[1]
        h = x  # (k, batch, ...) possibly a transposed view of a (batch, k, ...) tensor
        traces: list[Trace] = []
        for layer in self.layers:
            m = layer.module
            if isinstance(m, nn.Linear):
                if h.dim() != 3:
                    raise _Unsupported
                assert layer.weight is not None
                w = params[layer.weight]  # (k, out, in)
                if layer.bias is not None:
                    z = torch.baddbmm(params[layer.bias].unsqueeze(1), h, w.transpose(1, 2))
                else:
                    z = torch.bmm(h, w.transpose(1, 2))
                z = _traced(z, trace, traces)
                if trace:
                    traces.append(Trace(layer, h.detach(), z, client_minor=False))
                h = z
            elif isinstance(m, nn.Conv2d):
                if h.dim() != 5:
                    raise _Unsupported
                inputs = h.transpose(0, 1).reshape(batch, -1, *h.shape[3:])  # (batch, k·C, H, W)
                # channels-last: oneDNN's grouped convolution and the pooling after it are
                # markedly faster on it (benchmarks/bench_workloads.py); a no-op after the first
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                assert layer.weight is not None
                w = params[layer.weight].reshape(-1, *m.weight.shape[1:])  # (k·out, C, kh, kw)
                b = params[layer.bias].reshape(-1) if layer.bias is not None else None
                z = F.conv2d(inputs, w, b, m.stride, m.padding, m.dilation, groups=k)
                z = _traced(z, trace, traces)
                if trace:
                    traces.append(Trace(layer, inputs.detach(), z, client_minor=True))
                h = z.view(batch, k, m.out_channels, *z.shape[2:]).transpose(0, 1)
            elif isinstance(m, POOLING):
                if h.dim() != 5:
                    raise _Unsupported
                # pooling acts channel by channel: pool the (batch, k·C, H, W) layout in place
                # of reshaping the clients into the batch (a copy in channels-last)
                pooled = m(h.transpose(0, 1).reshape(batch, -1, *h.shape[3:]))
                h = pooled.view(batch, k, h.shape[2], *pooled.shape[2:]).transpose(0, 1)
            elif isinstance(m, nn.Flatten):
                h = h.flatten(2)
            else:
                h = m(h)
        return h, traces


def _pool_before_relu(layers: list[StackedLayer]) -> tuple[StackedLayer, ...]:
    """The plan with every ReLU → MaxPool2d pair run as MaxPool2d → ReLU.

    The two commute exactly: ReLU is non-decreasing, so the window's maximum after it is ReLU of
    the maximum before it, and the gradient reaches the same element (the first maximum, or
    none when the maximum is ≤ 0, where ReLU's gradient is 0). ReLU then touches a quarter of
    the values (2×2 pooling): it is memory-bound on the large stacked activations.
    """
    out = list(layers)
    for i in range(len(out) - 1):
        if type(out[i].module) is nn.ReLU and type(out[i + 1].module) is nn.MaxPool2d:
            out[i], out[i + 1] = out[i + 1], out[i]
    return tuple(out)


def _leaves(module: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``(parameter-name prefix, layer)`` in execution order, nested ``nn.Sequential`` unrolled
    (LeNet-5 is a feature extractor inside a classifier)."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if type(child) is nn.Sequential:
            out += _leaves(child, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", child))
    return out


def _activation_elements(module: nn.Sequential, x: Tensor) -> int:
    """Numbers the layers of ``module`` output for the sample batch ``x`` (1, *input)."""
    total = 0

    def count(_m: nn.Module, _i: object, out: Tensor) -> None:
        nonlocal total
        total += out.numel()

    handles = [layer.register_forward_hook(count) for _, layer in _leaves(module)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


class _Unsupported(Exception):
    """A layer met a shape the stacked forward does not handle."""


def _traced(z: Tensor, trace: bool, traces: list[Trace]) -> Tensor:
    if trace and not traces and not z.requires_grad:
        z.requires_grad_()
    return z


def unfolded_inputs(t: Trace, k: int) -> Tensor:
    """Convolution inputs as patches ``(batch, k, C·kh·kw, positions)`` (im2col)."""
    m = t.layer.module
    assert isinstance(m, nn.Conv2d)
    batch = t.inputs.shape[0]
    patches = F.unfold(
        t.inputs.reshape(batch * k, -1, *t.inputs.shape[2:]),
        m.kernel_size,
        m.dilation,
        m.padding,  # type: ignore[arg-type]  # string paddings are refused by StackedModel.of
        m.stride,
    )
    return patches.view(batch, k, *patches.shape[1:])


def output_gradients(t: Trace, g: Tensor, k: int) -> Tensor:
    """A layer's output gradient as ``(k, batch, out)`` (Linear) or ``(batch, k, out, positions)``."""
    if not t.client_minor:
        return g
    return g.reshape(g.shape[0], k, -1, g.shape[2] * g.shape[3])


@torch.no_grad()
def accumulate_gradients(
    traces: list[Trace], grads: tuple[Tensor, ...], factor: Tensor | None, out: list[Tensor]
) -> list[Tensor]:
    """Write ``Σ_i factor_i · ∇_θ ℓ_i`` of every client into the blocks ``out`` (each
    ``(k, *shape)``, contiguous); ``factor`` (k, batch).

    ``grads`` are the output gradients of ``Σ_i ℓ_i`` (or of any per-sample weighted loss), so
    ``factor=None`` gives that loss's gradient. Book-keeping (Bu et al. 2023): a Linear layer's
    weight gradient is ``(factor ⊙ G)ᵀ A`` per client; a convolution's comes from the grouped
    convolution's weight-gradient kernel applied to ``factor ⊙ G`` and the stored input.
    Results go straight into ``out``: large temporaries cost page faults on every step.
    """
    k = out[0].shape[0]
    for t, g in zip(traces, grads, strict=True):
        m, layer = t.layer.module, t.layer
        assert layer.weight is not None
        if isinstance(m, nn.Linear):
            gw = g if factor is None else g * factor[..., None]  # (k, batch, out)
            torch.bmm(gw.transpose(1, 2), t.inputs, out=out[layer.weight])
            if layer.bias is not None:
                torch.sum(gw, dim=1, out=out[layer.bias])
        else:
            assert isinstance(m, nn.Conv2d)
            go = output_gradients(t, g, k)  # (batch, k, out, positions)
            if factor is not None:
                go = go * factor.t()[..., None, None]
            # the convolution's own weight-gradient kernel (grouped: one group per client)
            weight = conv2d_weight(
                t.inputs,
                (k * m.out_channels, *m.weight.shape[1:]),
                go.reshape(g.shape),
                m.stride,
                m.padding,  # type: ignore[arg-type]  # string paddings are refused by of()
                m.dilation,
                groups=k,
            )
            out[layer.weight].copy_(weight.view(out[layer.weight].shape))
            if layer.bias is not None:
                torch.sum(go, dim=(0, 3), out=out[layer.bias])
    return out


__all__ = [
    "ELEMENTWISE",
    "POOLING",
    "StackedLayer",
    "StackedModel",
    "Trace",
    "accumulate_gradients",
    "output_gradients",
    "unfolded_inputs",
]
