"""Multinomial logistic regression."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedguard.models.base import ModelSpec, flat_size


@dataclass(frozen=True)
class LogReg(ModelSpec):
    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(flat_size(input_shape), n_classes))
