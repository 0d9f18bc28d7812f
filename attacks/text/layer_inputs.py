"""The inputs a model's projection layers receive on given token sequences (forward hooks).

DAGER compares candidate inputs with the span of an observed gradient; the candidates are
produced by running the attacker's copy of the model (the broadcast weights) on candidate token
sequences and recording what the observed linear layers were fed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from attacks.text.dager import LayerInputs


def projection_inputs(
    module: nn.Module, layer_names: Sequence[str], params: Tensor | None = None
) -> LayerInputs:
    """A :data:`~attacks.text.dager.LayerInputs` over a float64 copy of ``module`` (the copy
    keeps the attacker's arithmetic far below the span threshold), with the flat ``params``
    ``(d,)`` loaded when given: tokens ``(N, P)`` → the ``(N, P, d)`` input of each named
    submodule, in order. The module's ``forward`` takes the token tensor."""
    model = copy.deepcopy(module)
    if params is not None:
        torch.nn.utils.vector_to_parameters(params.detach().clone(), model.parameters())
    model = model.double().eval()
    targets = dict(model.named_modules())
    missing = [n for n in layer_names if n not in targets]
    if missing:
        raise KeyError(f"the model has no submodule named {missing[0]!r}.")

    def run(tokens: Tensor) -> list[Tensor]:
        seen: dict[str, Tensor] = {}
        handles = [
            targets[name].register_forward_pre_hook(
                lambda _m, args, name=name: seen.__setitem__(name, args[0].detach())
            )
            for name in layer_names
        ]
        try:
            with torch.no_grad():
                model(tokens)
        finally:
            for h in handles:
                h.remove()
        return [seen[name] for name in layer_names]

    return run


__all__ = ["projection_inputs"]
