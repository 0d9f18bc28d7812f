"""Standardisation with statistics of the training split only.

Mean and standard deviation are computed on the training split (the union of the clients' data
before partitioning) and applied to training, validation and test alike, so no statistic of the
held-out data leaks into training. The statistics themselves are an aggregate of all clients' data
that no privacy mechanism of the run covers: they are kept in ``FederatedData.normalization``, and
the privacy statement (:mod:`fedguard.privacy.statement`) says so when a dataset normalises.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from fedguard.data.dataset import Dataset
from fedguard.errors import ConfigError

MODES = ("channel", "feature")


def training_statistics(train: Dataset, mode: str) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (zero std → 1) per channel (axis 1 of images) or feature."""
    if mode not in MODES:
        raise ConfigError(f"dataset.normalize must be one of {', '.join(MODES)}; got {mode!r}.")
    x = train.features
    if mode == "channel" and x.dim() >= 3:
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    else:
        dims = [0]
        shape = [1, *x.shape[1:]]
    mean = x.mean(dim=dims).reshape(shape)
    std = x.std(dim=dims, unbiased=False).reshape(shape)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardize(
    train: Dataset, *others: Dataset
) -> tuple[list[Dataset], dict[str, list[float]] | None]:
    """``train`` and ``others`` standardised with ``train``'s statistics; the statistics."""
    mode = train.normalize
    if mode is None:
        return [train, *others], None
    mean, std = training_statistics(train, mode)
    value_range = train.value_range
    if value_range is not None:  # the new bounds of a bounded input (images in [0, 1])
        low = float(((value_range[0] - mean) / std).min())
        high = float(((value_range[1] - mean) / std).max())
        value_range = (low, high)
    out = [
        replace(d, features=(d.features - mean) / std, value_range=value_range)
        for d in (train, *others)
    ]
    stats = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return out, {"mode": mode, "source": "training split only", **stats}  # type: ignore[dict-item]
