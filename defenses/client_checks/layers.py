"""The weight matrices of a flat parameter vector and what PyTorch's initialisation gives them.

Only ``layout.names`` and ``layout.shapes`` are used (flat order). A weight is a parameter
named ``…weight`` with at least two dimensions — rows are its first dimension, ``fan_in`` the
product of the others — and its bias the ``…bias`` of the same module with one entry per row.
PyTorch initialises both uniformly in ``±1/√fan_in`` (``nn.Linear``, ``nn.Conv*``), whose
standard deviation is ``1/√(3·fan_in)``.

References
----------
.. [1] K. He, X. Zhang, S. Ren, J. Sun, "Delving Deep into Rectifiers: Surpassing Human-Level
   Performance on ImageNet Classification", ICCV 2015 (the ``kaiming_uniform_`` PyTorch uses
   with ``a = √5``, giving the ``±1/√fan_in`` bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightLayer:
    name: str
    weight: slice
    rows: int
    fan_in: int
    bias: slice | None

    @property
    def init_std(self) -> float:
        """Standard deviation of PyTorch's default initialisation of this layer."""
        return 1.0 / math.sqrt(3.0 * self.fan_in)


def weight_layers(layout: Any) -> list[WeightLayer]:
    names = tuple(layout.names)
    shapes = tuple(tuple(int(v) for v in s) for s in layout.shapes)
    spans: dict[str, tuple[slice, tuple[int, ...]]] = {}
    start = 0
    for name, shape in zip(names, shapes, strict=True):
        size = math.prod(shape)
        spans[name] = (slice(start, start + size), shape)
        start += size
    out = []
    for name, (span, shape) in spans.items():
        if not name.endswith("weight") or len(shape) < 2:
            continue
        bias_name = name[: -len("weight")] + "bias"
        bias = spans.get(bias_name)
        bias_span = bias[0] if bias is not None and bias[1] == (shape[0],) else None
        out.append(WeightLayer(name, span, shape[0], math.prod(shape[1:]), bias_span))
    return out


__all__ = ["WeightLayer", "weight_layers"]
