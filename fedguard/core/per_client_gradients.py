"""Per-client gradients for wide residual CNNs on a CPU (ResNet-8/18 with GroupNorm).

The vectorized trainer computes the gradients of all clients of a step at once where that is
faster: the stacked plan for chains of Linear/Conv2d layers (:mod:`fedguard.core.stacked_model`)
and ``vmap(grad)`` otherwise. For the ResNets of :mod:`fedguard.models.resnet_gn` on a CPU
neither is: one client's activations at ResNet widths (16 images × 16 channels × 32×32 ≈ 1 MB a
layer) stay in the processor's cache through the forward and backward pass, the stacked
activations of 50 clients (50 MB a layer) stream from memory for every element-wise operation,
GroupNorm and residual sum, and oneDNN's grouped convolution over clients is about 1.7× slower
than one client's convolution per client (measured on one thread; ``vmap`` was 3.7× slower than
the sequential trainer, a stacked residual plan 2.5×). So here the step's gradients are computed
client by client on each client's real samples — the very operations the sequential reference
performs, hence equal to it up to float rounding — while the batch schedule, the stacked
parameters and the SGD/momentum/FedProx update stay vectorized (:class:`ClientStack`). On a GPU
the trainers keep ``vmap``.

References
----------
He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Wu & He, "Group Normalization", ECCV 2018.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedguard.models.flat import FlatModel
from fedguard.models.resnet_gn import ResNet

#: ``gradient(params, x (k, batch, *input), y, weight (k, batch), out)`` as in local_training
GradientFn = Callable[[list[Tensor], Tensor, Tensor, Tensor, list[Tensor]], list[Tensor]]

_COVERED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def covered(module: nn.Module) -> bool:
    """Models this path serves: the built-in GroupNorm ResNets without buffers."""
    if module not in _COVERED:
        _COVERED[module] = isinstance(module, ResNet) and not any(True for _ in module.buffers())
    return _COVERED[module]


def per_client_gradient_fn(model: FlatModel, device: str) -> GradientFn | None:
    """The client-by-client gradient function for ``model`` on ``device``, or None (not a
    covered model, or not a CPU).

    It writes ``∇ mean_j ℓ(θ_c; x_cj, y_cj)`` over each client's real samples of the step into
    the trainer's flat ``(k, d)`` gradient block ``out[0]``. The real samples of a row are a
    prefix (:func:`fedguard.core.local_training.batch_schedule` pads at the end) and ``weight``
    is ``1/count`` on them, so this is the weighted sum the other paths compute.
    """
    if not device.startswith("cpu") or not covered(model.module):
        return None
    module = model.module

    def gradient(
        params: list[Tensor], x: Tensor, y: Tensor, weight: Tensor, out: list[Tensor]
    ) -> list[Tensor]:
        (flat,) = params  # (k, d)
        counts = (weight > 0).sum(dim=1).tolist()  # (k,) real samples of each row
        for c, count in enumerate(counts):
            if count == 0:
                out[0][c].zero_()
                continue
            leaves = {
                name: block.detach().requires_grad_()
                for name, block in model.layout.unflatten(flat[c]).items()
            }
            # the module's own forward, as the sequential trainer calls it: same layout (it
            # moves CPU images to channels-last itself), same kernels, same rounding. A layout
            # of this path's own drifted 3e-4 from the reference over two steps: a ReLU input
            # that rounds to the other side of zero changes a gradient by O(1), not by ulps
            logits = functional_call(module, leaves, (x[c, :count],))
            loss = F.cross_entropy(logits, y[c, :count])
            grads = torch.autograd.grad(loss, list(leaves.values()))
            with torch.no_grad():
                torch.cat([g.reshape(-1) for g in grads], out=out[0][c])
        return out

    return gradient


__all__ = ["covered", "per_client_gradient_fn"]
