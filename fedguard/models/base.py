"""Model specs: a frozen dataclass that builds a ``torch.nn.Module`` for given data sizes."""

from __future__ import annotations

from torch import nn

from fedguard.api import Component


class ModelSpec(Component):
    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        raise NotImplementedError  # abstract

    def initialize(self, module: nn.Module) -> None:
        """Initialise a freshly built module from the global torch RNG, which the caller has
        seeded with the run's keyed ``model_init`` stream (default: every layer's own
        ``reset_parameters``). A spec whose module starts from pre-trained weights overrides
        this to initialise only what is not pre-trained (adapters)."""
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def flat_size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for s in input_shape:
        size *= s
    return size
