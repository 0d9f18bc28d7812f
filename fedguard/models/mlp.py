"""Multi-layer perceptron with configurable hidden sizes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedguard.api import require
from fedguard.models.base import ModelSpec, flat_size

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


@dataclass(frozen=True)
class MLP(ModelSpec):
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        require(all(h >= 1 for h in self.hidden), "model.hidden", "a list of positive layer sizes")
        require(
            self.activation in _ACTIVATIONS,
            "model.activation",
            f"one of {', '.join(sorted(_ACTIVATIONS))}",
        )

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = flat_size(input_shape)
        for h in self.hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[self.activation]()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)
