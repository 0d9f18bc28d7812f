"""Where the first fully connected layer sits in a flat parameter vector.

The malicious-server attacks rewrite the parameters of the task's own architecture (no layer is
added, so a shape check cannot notice): the first layer must be fully connected with a bias and
read the raw input, and the layer after it must read the first layer's outputs (through an
element-wise activation — the attacks assume ReLU, which :func:`check_relu_mlp` verifies when the
module is known). Only names and shapes are used, so this works on the core's
:class:`fedguard.models.flat.ParamLayout` and on the attacks' own layout alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from fedguard.errors import IncompatibleError


@dataclass(frozen=True)
class FirstLayer:
    """Slices of the flat vector: the first layer's weight ``(rows, inputs)`` and bias
    ``(rows,)``, and the next layer's weight ``(outputs, rows)``."""

    weight: slice
    bias: slice
    next_weight: slice
    rows: int
    inputs: int
    next_outputs: int
    next_bias: slice | None = None  # the next layer's bias, when it has one

    def weight_of(self, flat: Tensor) -> Tensor:
        """``(..., d)`` → ``(..., rows, inputs)`` view of the first layer's weight."""
        return flat[..., self.weight].reshape(*flat.shape[:-1], self.rows, self.inputs)

    def bias_of(self, flat: Tensor) -> Tensor:
        return flat[..., self.bias]

    def next_weight_of(self, flat: Tensor) -> Tensor:
        return flat[..., self.next_weight].reshape(*flat.shape[:-1], self.next_outputs, self.rows)


def _offsets(shapes: tuple[tuple[int, ...], ...]) -> list[int]:
    out, start = [], 0
    for shape in shapes:
        out.append(start)
        start += math.prod(shape)
    return out


def first_layer(layout: Any, input_numel: int) -> FirstLayer:
    """Locate the first layer from ``layout.names`` / ``layout.shapes`` (in flat order).

    Raises :class:`IncompatibleError` naming what is missing when the first parameter is not a
    ``(rows, input_numel)`` weight followed by a ``(rows,)`` bias and a ``(·, rows)`` weight.
    """
    shapes = tuple(tuple(int(v) for v in s) for s in layout.shapes)
    offsets = _offsets(shapes)
    ok = (
        len(shapes) >= 3
        and len(shapes[0]) == 2
        and shapes[0][1] == input_numel
        and shapes[1] == (shapes[0][0],)
        and len(shapes[2]) == 2
        and shapes[2][1] == shapes[0][0]
    )
    if not ok:
        raise IncompatibleError(
            "the malicious-server attacks need a model whose first layer is fully connected with "
            f"a bias reading the {input_numel} raw input values, followed by a fully connected "
            f"layer (an MLP); this model's first parameters have shapes {list(shapes[:3])}."
        )
    rows, inputs = shapes[0]
    spans = [slice(o, o + math.prod(s)) for o, s in zip(offsets, shapes, strict=True)]
    outputs = shapes[2][0]
    next_bias = spans[3] if len(shapes) > 3 and shapes[3] == (outputs,) else None
    return FirstLayer(spans[0], spans[1], spans[2], rows, inputs, outputs, next_bias)


def check_relu_mlp(module: nn.Module) -> None:
    """Raise :class:`IncompatibleError` unless the first Linear layer is followed by a ReLU."""
    seen_linear = False
    for child in module.modules():
        if isinstance(child, nn.Linear):
            if seen_linear:
                break
            seen_linear = True
        elif seen_linear and not isinstance(child, nn.Sequential):
            if isinstance(child, nn.ReLU):
                return
            break
    raise IncompatibleError(
        "the malicious-server attacks need a ReLU after the first fully connected layer "
        "(model.activation: relu)."
    )


__all__ = ["FirstLayer", "check_relu_mlp", "first_layer"]
