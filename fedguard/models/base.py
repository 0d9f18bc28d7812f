"""Model specs: a frozen dataclass that builds a ``torch.nn.Module`` for given data sizes."""

from __future__ import annotations

from torch import nn

from fedguard.api import Component


class ModelSpec(Component):
    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        raise NotImplementedError  # abstract


def flat_size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for s in input_shape:
        size *= s
    return size
