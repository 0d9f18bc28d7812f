"""Backdoor with a pixel-pattern (images) or feature (tabular) trigger."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import DataAttack, require


@dataclass(frozen=True)
class Backdoor(DataAttack):
    """Stamp a trigger on part of a malicious client's data and relabel it as ``target_label``.

    *Images* — features of shape ``(N, H, W)`` or ``(N, C, H, W)``, or flat ``(N, F)`` with
    ``image_shape`` given (``(H, W)`` or ``(C, H, W)``, product F): a ``trigger_size`` ×
    ``trigger_size`` square in the bottom-right corner is set to ``trigger_value`` in every channel
    (BadNets' pixel pattern). *Tabular* — the last ``trigger_size`` features are set to
    ``trigger_value``. ``trigger_value=None`` uses the largest feature value of the tensor being
    stamped (a white pixel on images, an out-of-range value on standardized tabular data).
    :meth:`triggered` stamps the test inputs whose label is not the target and labels them with
    the target: accuracy on it is the attack success rate.

    Parameters
    ----------
    target_label : int
        The attacker's label (≥ 0).
    poison_fraction : float
        Share of the client's samples that are stamped and relabelled, in (0, 1].
    trigger_size : int
        Side of the square (images) or number of trigger features (tabular), ≥ 1.
    trigger_value : float | None
        Value written by the trigger, or ``None`` for the tensor's maximum.
    image_shape : tuple[int, ...] | None
        Shape of one flat sample as an image, e.g. ``(8, 8)`` for scikit-learn's digits.

    References
    ----------
    Gu, Dolan-Gavitt, Garg. "BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain." arXiv:1708.06733, 2017; Bagdasaryan et al. "How To Backdoor Federated
    Learning." AISTATS 2020.
    """

    target_label: int = 0
    poison_fraction: float = 0.5
    trigger_size: int = 2
    trigger_value: float | None = None
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        require(self.target_label >= 0, "target_label", "a non-negative class label")
        require(0 < self.poison_fraction <= 1, "poison_fraction", "in (0, 1]")
        require(self.trigger_size >= 1, "trigger_size", "an integer >= 1")
        require(
            self.image_shape is None
            or (len(self.image_shape) in (2, 3) and all(s >= 1 for s in self.image_shape)),
            "image_shape",
            "(height, width) or (channels, height, width), or null",
        )

    def apply_trigger(self, features: Tensor) -> Tensor:
        """A copy of ``features`` with the trigger stamped on every sample."""
        value = float(features.max()) if self.trigger_value is None else self.trigger_value
        out = features.clone()
        if out.dim() >= 3 or self.image_shape is not None:
            flat = out.dim() == 2
            if flat:
                shape = self.image_shape if self.image_shape is not None else ()
                require(
                    math.prod(shape) == out.shape[1],
                    "image_shape",
                    f"a shape with {out.shape[1]} pixels (the number of features)",
                )
                out = out.reshape(out.shape[0], *shape)
            h, w = out.shape[-2], out.shape[-1]
            s = min(self.trigger_size, h, w)
            out[..., h - s :, w - s :] = value
            return out.reshape(features.shape) if flat else out
        k = min(self.trigger_size, out.shape[1])
        out[:, out.shape[1] - k :] = value
        return out

    def poison(
        self, features: Tensor, labels: Tensor, n_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        require(self.target_label < n_classes, "target_label", f"below n_classes = {n_classes}")
        n = labels.shape[0]
        chosen = torch.randperm(n, generator=generator)[: round(self.poison_fraction * n)]
        x = features.clone()
        y = labels.clone()
        x[chosen] = self.apply_trigger(features[chosen])
        y[chosen] = self.target_label
        return x, y

    def triggered(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | None:
        keep = labels != self.target_label
        x = self.apply_trigger(features[keep])
        return x, torch.full_like(labels[keep], self.target_label)
