"""LeNet-5 for small grayscale images (FEMNIST's 28×28 characters)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec


@dataclass(frozen=True)
class LeNet5(ModelSpec):
    """Conv 5×5 (6, same padding) → ReLU → max-pool 2 → conv 5×5 (16) → ReLU → max-pool 2 →
    120 → 84 → classes, with ReLU instead of the original's scaled tanh and subsampling layers.

    References
    ----------
    LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document recognition",
    Proc. IEEE 86(11), 1998.
    """

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        if len(input_shape) != 3 or min(input_shape[1:]) < 12:
            raise ConfigError(
                "model 'lenet5' needs images shaped (channels, height, width) of at least "
                f"12×12 pixels; this dataset's samples have shape {input_shape}."
            )
        features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = features(torch.zeros(1, *input_shape)).shape[1]
        return nn.Sequential(
            features,
            nn.Linear(width, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, n_classes),
        )
