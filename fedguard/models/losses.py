"""Cross-entropy of classifiers and of next-token models, per sample.

A classifier's logits are ``(B, C)`` with targets ``(B,)``; a sequence model's are ``(B, L, V)``
with targets ``(B, L)``: a sample's loss is then the mean over its L tokens, so every trainer
(mean over a batch of samples, per-sample clipping in DP-SGD) treats a window as one sample.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def per_sample_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` loss of every sample: cross-entropy, averaged over tokens for sequences."""
    if targets.dim() <= 1:
        return F.cross_entropy(logits, targets, reduction="none")
    losses = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    return losses.view(targets.shape).flatten(1).mean(dim=1)


def mean_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """The batch mean of :func:`per_sample_cross_entropy` (PyTorch's own for classifiers)."""
    if targets.dim() <= 1:
        return F.cross_entropy(logits, targets)
    return per_sample_cross_entropy(logits, targets).mean()


def per_sample_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` float: 1/0 for a classifier, the fraction of tokens predicted for sequences."""
    hits = (logits.argmax(-1) == targets).float()
    return hits if targets.dim() <= 1 else hits.flatten(1).mean(dim=1)


__all__ = ["mean_cross_entropy", "per_sample_accuracy", "per_sample_cross_entropy"]
