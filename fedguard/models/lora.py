"""Low-rank adapters (LoRA, FFA-LoRA) on a frozen base model, as fedguard's own modules.

``adapt(module, targets, rank, alpha, train_a)`` returns a copy of ``module`` in which every
``nn.Linear`` whose qualified name matches one of ``targets`` computes

    y = W x + b + (α / r) · B A x,     A ∈ ℝ^{r×in}, B ∈ ℝ^{out×r},

with ``W, b`` frozen, and every other layer with parameters is frozen too. Frozen tensors are
*buffers*, not parameters, so the flat parameter vector (:class:`fedguard.models.flat.ParamLayout`)
holds only the trainable adapter matrices: the trainers, client transforms (clipping, DP noise),
transports (secure aggregation), aggregators, observers and the privacy ledger all work on adapter
updates unchanged. A and B are ``nn.Linear`` layers without bias (named ``….lora_A.weight`` and
``….lora_B.weight``), so per-sample gradients come from the same Linear rules as everywhere (vmap,
Opacus). With ``train_a=False`` (FFA-LoRA, Sun et al. 2024) A is a frozen buffer fixed at its
random initialisation and only B is trained and sent.

Initialisation (:func:`init_adapters`): A ~ Kaiming-uniform (PyTorch's Linear default, as
Hu et al. and ``peft``), B = 0, so the adapted model starts equal to the base model.

Why not ``peft``: it is not installed, and its ``LoraLayer`` keeps the base weights as
parameters with ``requires_grad=False``, which the functional trainers (``functional_call`` over
the flat vector of *all* parameters) would then carry and send; freezing by type keeps them out.

Public API
----------
``adapt(module, targets, rank, alpha, train_a=True) -> nn.Module``
``LoRALinear`` (``.frozen``, ``.lora_A``, ``.lora_B``, ``.scaling``), ``FrozenLinear``,
``FrozenEmbedding``, ``FrozenLayerNorm``;
``init_adapters(module, generator)``, ``averaging_mismatch(a, b)`` (FedAvg's product of averages against the average of products),
``merge_adapters(module) -> nn.Module`` (every LoRALinear
replaced by a FrozenLinear with ``W + (α/r)·B·A``), ``adapter_pairs(layout) -> list[(prefix,
a_name | None, b_name)]`` (the A/B parameter names of every adapted layer in a layout).

References
----------
Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
Sun, Li, Ding, Zhou, "Improving LoRA in Privacy-preserving Federated Learning" (FFA-LoRA),
ICLR 2024.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedguard.errors import ConfigError


class FrozenLinear(nn.Module):
    """``x Wᵀ + b`` with ``W``, ``b`` as buffers (not trained, not sent)."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class FrozenEmbedding(nn.Module):
    weight: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight)


class FrozenLayerNorm(nn.Module):
    weight: Tensor | None
    bias: Tensor | None

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.register_buffer(
            "weight", None if norm.weight is None else norm.weight.detach().clone()
        )
        self.register_buffer("bias", None if norm.bias is None else norm.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class LoRALinear(nn.Module):
    """A frozen Linear plus the low-rank update ``(α/r)·B A`` (A trained unless FFA-LoRA)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, train_a: bool = True) -> None:
        super().__init__()
        self.frozen = FrozenLinear(base.weight, base.bias)
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_A: nn.Linear | FrozenLinear = a if train_a else FrozenLinear(a.weight, None)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.lora_A.weight, self.lora_B.weight
        if a.dim() == 2 and b.dim() == 2:  # one model (hooks on lora_A/lora_B see the call)
            return self.frozen(x) + self.scaling * self.lora_B(self.lora_A(x))
        return self.frozen(x) + self.scaling * stacked_low_rank(x, a, b)

    def merged_weight(self) -> Tensor:
        return self.frozen.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight


def stacked_low_rank(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``B_c A_c x`` for k clients at once: ``x`` ``(k·m, ..., in)`` holds client c's rows at
    ``[c·m, (c+1)·m)``; ``a`` is ``(k, r, in)`` or one shared ``(r, in)`` (FFA-LoRA's frozen
    A), ``b`` ``(k, out, r)`` or ``(out, r)``. One batched product per factor, so k clients'
    adapters cost what one client's do on k times the tokens (the frozen ``W x`` around it is
    already one product over every client's tokens)."""
    k = a.shape[0] if a.dim() == 3 else b.shape[0]
    rows = x.reshape(k, -1, x.shape[-1])  # (k, m·…, in), client-major
    low = rows @ a.transpose(-1, -2) if a.dim() == 3 else F.linear(rows, a)  # (k, m·…, r)
    up = low @ b.transpose(-1, -2) if b.dim() == 3 else F.linear(low, b)  # (k, m·…, out)
    return up.reshape(*x.shape[:-1], up.shape[-1])


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def _frozen_copy(child: nn.Module) -> nn.Module | None:
    if isinstance(child, nn.Linear):
        return FrozenLinear(child.weight, child.bias)
    if isinstance(child, nn.Embedding):
        return FrozenEmbedding(child.weight)
    if isinstance(child, nn.LayerNorm):
        return FrozenLayerNorm(child)
    return None


def adapt(
    module: nn.Module,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    train_a: bool = True,
) -> nn.Module:
    """A copy of ``module`` with LoRA on the Linear layers named by ``targets`` (a layer
    matches a pattern if its name equals it, ends with ``"." + pattern`` or matches it as a
    shell glob) and every other layer frozen. Raises a one-sentence ``ConfigError`` for a
    pattern that matches no Linear layer or a rank larger than a layer allows."""
    if rank < 1:
        raise ConfigError(f"model.lora_rank must be an integer ≥ 1; got {rank}.")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"model.lora_alpha must be a finite number > 0; got {alpha}.")
    adapted = copy.deepcopy(module)
    linears = [n for n, m in adapted.named_modules() if isinstance(m, nn.Linear)]
    for pattern in targets:
        if not any(_matches(n, pattern) for n in linears):
            raise ConfigError(
                f"model.lora_targets entry {pattern!r} matches no Linear layer; the Linear "
                f"layers are {', '.join(linears)}."
            )
    for name in linears:
        if any(_matches(name, p) for p in targets):
            layer = adapted.get_submodule(name)
            assert isinstance(layer, nn.Linear)
            most = min(layer.in_features, layer.out_features)
            if rank > most:
                raise ConfigError(
                    f"model.lora_rank ({rank}) must be at most {most}, the smaller side of "
                    f"layer {name!r} ({layer.out_features}×{layer.in_features})."
                )
    _replace(adapted, "", targets, rank, alpha, train_a)
    if not any(True for _ in adapted.parameters()):
        raise ConfigError("model.lora_targets must name at least one Linear layer to adapt.")
    return adapted


def _replace(
    parent: nn.Module, prefix: str, targets: Sequence[str], rank: int, alpha: float, train_a: bool
) -> None:
    for child_name, child in list(parent.named_children()):
        name = f"{prefix}{child_name}"
        if isinstance(child, nn.Linear) and any(_matches(name, p) for p in targets):
            setattr(parent, child_name, LoRALinear(child, rank, alpha, train_a))
        elif (frozen := _frozen_copy(child)) is not None:
            setattr(parent, child_name, frozen)
        elif any(True for _ in child.parameters(recurse=False)):
            raise ConfigError(
                f"model: layer {name!r} ({type(child).__name__}) cannot be frozen for adapters."
            )
        else:
            _replace(child, f"{name}.", targets, rank, alpha, train_a)


@torch.no_grad()
def init_adapters(module: nn.Module, generator: torch.Generator) -> None:
    """A ~ U(±1/√in) (PyTorch's Kaiming-uniform default for Linear, a = √5), B = 0, from
    ``generator`` only."""
    for m in module.modules():
        if isinstance(m, LoRALinear):
            a = m.lora_A.weight
            bound = 1.0 / math.sqrt(a.shape[1])
            a.copy_(torch.rand(a.shape, generator=generator, dtype=a.dtype) * 2 * bound - bound)
            m.lora_B.weight.zero_()


@torch.no_grad()
def merge_adapters(module: nn.Module) -> nn.Module:
    """A copy with every adapted layer folded into one frozen Linear ``W + (α/r)·B A``."""
    merged = copy.deepcopy(module)
    for name, m in list(merged.named_modules()):
        if isinstance(m, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            parent = merged.get_submodule(parent_name) if parent_name else merged
            setattr(parent, child, FrozenLinear(m.merged_weight(), m.frozen.bias))
    return merged


def averaging_mismatch(a: Tensor, b: Tensor) -> Tensor:
    """``mean_i(B_i A_i) − mean(B)·mean(A)`` for stacked client adapters ``a`` (n, r, in) and
    ``b`` (n, out, r): what FedAvg of A and B separately misses of the average of the clients'
    low-rank updates. Equal to ``mean_i((B_i − B̄)(A_i − Ā))``; zero when every A_i is the same
    (FFA-LoRA)."""
    return (b @ a).mean(dim=0) - b.mean(dim=0) @ a.mean(dim=0)


def adapter_pairs(names: Sequence[str]) -> list[tuple[str, str | None, str]]:
    """``(layer, A parameter name or None (frozen A), B parameter name)`` of every adapted
    layer among the parameter ``names`` of a layout, in layout order."""
    pairs = []
    for name in names:
        if name.endswith(".lora_B.weight"):
            layer = name[: -len(".lora_B.weight")]
            a = f"{layer}.lora_A.weight"
            pairs.append((layer, a if a in names else None, name))
    return pairs


__all__ = [
    "FrozenEmbedding",
    "FrozenLayerNorm",
    "FrozenLinear",
    "LoRALinear",
    "adapt",
    "adapter_pairs",
    "averaging_mismatch",
    "init_adapters",
    "merge_adapters",
    "stacked_low_rank",
]
