"""Train a round's clients in chunks that fit a memory budget (``training.max_memory``).

The vectorized trainer holds, for every client at once, its stacked parameters, momentum buffer
and gradient, its whole batch schedule of inputs, and one step's activations. At CNN scale (a
ResNet on CIFAR, hundreds of clients) that exceeds memory; instead of failing or swapping, the
round's clients are trained in consecutive chunks, each within the budget. Chunking is exact:
every client's batch schedule comes from its own counter-based stream
(:func:`fedguard.core.local_training.batch_schedule`), so a client's update does not depend on
which clients share its chunk.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fedguard.core.local_training import ClientData, LocalTrainingConfig, Trainer
from fedguard.core.per_client_gradients import covered
from fedguard.errors import ConfigError
from fedguard.models.flat import FlatModel

FLOAT_BYTES = 4
#: share of the free memory ``auto`` allows (the rest: evaluation, aggregation, the OS)
AUTO_SHARE = 0.5
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_memory(value: str | int) -> int | None:
    """Bytes of a budget such as ``2GB``, ``512MiB`` or ``1000000``; ``None`` for ``auto``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"training.max_memory must be positive; got {value}.")
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?", text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            "training.max_memory must be 'auto' or a positive size such as 4GB, 512MiB or a "
            f"number of bytes; got {value!r}."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def free_memory(device: str) -> int:
    """Bytes currently free on ``device`` (CUDA: the driver's count; CPU: available RAM)."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info()[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # platforms without sysconf: assume 4 GB
        return 4 * 10**9


_ACTIVATIONS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], int]] = (
    weakref.WeakKeyDictionary()
)


def activation_elements(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Numbers every layer outputs for one sample (a forward pass with hooks; no grad), cached
    per module and shape (the trainer asks every round)."""
    cache = _ACTIVATIONS.setdefault(module, {})
    key = tuple(int(s) for s in input_shape)
    if key not in cache:
        cache[key] = _count_activations(module, key)
    return cache[key]


def _count_activations(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return total


def bytes_per_client(
    model: FlatModel,
    input_shape: tuple[int, ...],
    steps: int,
    cfg: LocalTrainingConfig,
    device: str = "cpu",
) -> int:
    """Estimated peak bytes one client adds to a vectorized round.

    Parameters, momentum buffer, gradient and the update (4·d); the gathered inputs of its whole
    schedule (steps·batch·input); one step's activations kept for the backward pass, counted
    three times (forward values, their gradients, vmap's intermediate copies) — except where
    gradients are computed client by client (:mod:`fedguard.core.per_client_gradients`): then
    only one client's activations exist at a time, a fixed cost shared by the round.
    """
    d = model.layout.dim
    inputs = steps * cfg.batch_size * math.prod(input_shape)
    activations = 3 * cfg.batch_size * activation_elements(model.module, input_shape)
    if device.startswith("cpu") and covered(model.module):
        activations = 0
    return FLOAT_BYTES * (4 * d + inputs + activations)


@dataclass(frozen=True)
class ChunkedTrainer:
    """``trainer`` applied to consecutive chunks of the round's clients within ``max_memory``
    bytes (``None``: :data:`AUTO_SHARE` of the memory free at each round)."""

    trainer: Trainer
    max_memory: int | None
    input_shape: tuple[int, ...]

    def chunk_size(
        self,
        model: FlatModel,
        data: ClientData,
        client_ids: Sequence[int],
        cfg: LocalTrainingConfig,
    ) -> int:
        largest = int(data.counts[torch.as_tensor(list(client_ids), dtype=torch.long)].max())
        steps = (
            1
            if cfg.algorithm == "fedsgd"
            else cfg.local_epochs * math.ceil(largest / cfg.batch_size)
        )
        batch = largest if cfg.algorithm == "fedsgd" else cfg.batch_size
        device = str(data.features.device)
        per_client = bytes_per_client(
            model,
            self.input_shape,
            steps,
            LocalTrainingConfig(**{**cfg.__dict__, "batch_size": batch}),
            device,
        )
        budget = self.max_memory or int(AUTO_SHARE * free_memory(device))
        return max(1, budget // per_client)

    def __call__(
        self,
        model: FlatModel,
        global_params: Tensor,
        data: ClientData,
        client_ids: Sequence[int],
        cfg: LocalTrainingConfig,
        seed: int,
        round_index: int,
    ) -> Tensor:
        ids = list(client_ids)
        size = self.chunk_size(model, data, ids, cfg)
        if size >= len(ids):
            return self.trainer(model, global_params, data, ids, cfg, seed, round_index)
        per_client = global_params.dim() == 2  # each client's own starting point
        parts = [
            self.trainer(
                model,
                global_params[k : k + size] if per_client else global_params,
                data,
                ids[k : k + size],
                cfg,
                seed,
                round_index,
            )
            for k in range(0, len(ids), size)
        ]
        return torch.cat(parts)
