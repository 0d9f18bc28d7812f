"""Flat parameter vectors ↔ named parameter dicts, and functional evaluation.

Everything in the round works on flat ``(d,)`` vectors (and ``(n, d)`` stacks); the model is called
functionally with :func:`torch.func.functional_call` on views of those vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from fedguard.models.losses import per_sample_accuracy, per_sample_cross_entropy


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of a module's parameters in the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(module: nn.Module) -> ParamLayout:
        named = list(module.named_parameters())
        return ParamLayout(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(torch.Size(s).numel()) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``(..., d)`` → dict of ``(..., *shape)`` views (leading batch dims kept)."""
        lead = flat.shape[:-1]
        chunks = torch.split(flat, list(self.sizes), dim=-1)
        return {
            n: c.reshape(*lead, *s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)
        }

    def flatten(self, params: dict[str, Tensor], batch_dims: int = 0) -> Tensor:
        parts = [params[n].reshape(*params[n].shape[:batch_dims], -1) for n in self.names]
        return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class FlatModel:
    """A module skeleton plus its layout: call it on flat parameter vectors."""

    module: nn.Module
    layout: ParamLayout

    @staticmethod
    def of(module: nn.Module) -> FlatModel:
        return FlatModel(module, ParamLayout.of(module))

    def initial_params(self) -> Tensor:
        return self.layout.flatten(dict(self.module.named_parameters())).detach().clone()

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.module, self.layout.unflatten(flat), (x,))

    @torch.no_grad()
    def evaluate(
        self, flat: Tensor, x: Tensor, y: Tensor, batch: int | None = None
    ) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of parameters ``flat`` on (x, y); for next-token
        models the per-token accuracy and cross-entropy (nats) averaged over samples; in
        batches of ``batch`` samples (default: :func:`evaluation_batch`)."""
        if len(y) == 0:
            return float("nan"), float("nan")
        batch = batch or evaluation_batch(x)
        correct, loss = 0.0, 0.0
        for start in range(0, len(y), batch):
            logits = self.forward(flat, x[start : start + batch])
            target = y[start : start + batch]
            loss += float(per_sample_cross_entropy(logits, target).sum())
            correct += float(per_sample_accuracy(logits, target).sum())
        return correct / len(y), loss / len(y)


#: input elements of one evaluation batch on a CPU (1 MiB of float32 images)
CPU_BATCH_ELEMENTS = 2**18


def evaluation_batch(x: Tensor) -> int:
    """Samples per forward pass when evaluating on ``x``: for images on a CPU the power of two
    (64–4,096) whose inputs fill :data:`CPU_BATCH_ELEMENTS`, so that a convolutional network's
    activations stay near the processor's cache; otherwise (GPUs, tables, token sequences)
    4,096. One thread, CPU seconds to evaluate, 4,096 → this rule: LeNet-5 on 8,192
    FEMNIST-shaped images 0.91 → 0.42 s (batch 256), ResNet-8-GN on 2,048 CIFAR-shaped images
    1.84 → 0.67 s (batch 64). An MLP on 64 features was 2× slower at 256 than at 4,096: small
    batches only add per-call overhead where activations are small."""
    if x.device.type != "cpu" or x.dim() < 4 or len(x) == 0:
        return 4096
    per_sample = max(1, x[0].numel())
    fits = max(1, CPU_BATCH_ELEMENTS // per_sample)
    return int(min(4096, max(64, 1 << (fits.bit_length() - 1))))


#: input elements of one vmapped pass of :func:`logits_in_slices` (models × samples × elements
#: a sample), so that k models on a whole data set do not need k copies of its activations
INPUT_ELEMENTS = 2**22


def logits_in_slices(
    forward: Callable[[Tensor, Tensor], Tensor], params: Tensor, inputs: Tensor
) -> Iterator[tuple[slice, Tensor]]:
    """``(rows, logits (k, m, C))`` of the ``k`` models ``params`` (k, d) on consecutive slices
    of ``inputs``; ``forward(flat, x)`` is one model's logits.

    Images on a CPU run model after model in :func:`evaluation_batch` slices: a vmapped
    convolution is a grouped one, outside the channels-last layout (8 ResNet-8-GN shadows on
    600 CIFAR-sized images: 3.8–4.3 s vmapped, 1.8 s model by model; LeNet-5 0.36 → 0.28 s).
    Other inputs run vmapped over the models on slices of :data:`INPUT_ELEMENTS` (an MLP on
    256 models: 1.5–2.5× faster than a loop over them). Taking every input at once, as the
    membership attacks and the valuation evaluator did, made gigabyte activations (8.5 million
    page faults and 16 s of system time in ``configs/privacy_cifar10_synthetic.yaml``), and
    256 coalitions of a ResNet on CIFAR's test set needed ≈ 240 GB.
    """
    n, k = len(inputs), params.shape[0]
    if params.device.type == "cpu" and inputs.dim() >= 4:
        rows = evaluation_batch(inputs)
        for j in range(0, n, rows):
            x = inputs[j : j + rows]
            yield slice(j, j + len(x)), torch.stack([forward(flat, x) for flat in params])
        return
    batched = torch.func.vmap(forward, in_dims=(0, None))
    rows = max(1, INPUT_ELEMENTS // (max(k, 1) * max(1, inputs[0].numel() if n else 1)))
    for j in range(0, n, rows):
        x = inputs[j : j + rows]
        yield slice(j, j + len(x)), batched(params, x)
