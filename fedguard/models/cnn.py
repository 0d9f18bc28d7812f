"""Small convolutional network for image data (N, C, H, W)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec


@dataclass(frozen=True)
class CNN(ModelSpec):
    """Two 3×3 conv layers (same padding, ReLU), 2×2 max-pool after the second, then a linear head."""

    channels: tuple[int, ...] = (8, 16)
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        require(
            len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
            "model.channels",
            "a non-empty list of positive channel counts",
        )
        require(
            self.activation in ("relu", "tanh", "sigmoid"),
            "model.activation",
            "one of relu, sigmoid, tanh",
        )

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        if len(input_shape) != 3:
            raise ConfigError(
                "model 'cnn' needs image data shaped (channels, height, width); "
                f"this dataset's samples have shape {input_shape}."
            )
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[self.activation]
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in self.channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), act()]
            c = out
        layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), nn.Linear(c * (h // 2) * (w // 2), n_classes)]
        return nn.Sequential(*layers)
