"""A client's check of the model it received against what initialisation and training produce.

Malicious-server attacks must rewrite the parameters of the task's own architecture, and the
imprints that make them work are statistically unlike any model that honest training reaches
from PyTorch's initialisation. Per weight matrix (and its bias) the client computes:

* **duplicated rows** — the largest cosine similarity between two distinct rows: Robbing the
  Fed's bins are one direction repeated (cosine 1), random or trained rows are far from it;
* **dead rows** — a row or a bias vector that is exactly zero or constant (a first layer that
  never fires, as model inconsistency sends to the clients it does not target);
* **scale** — the standard deviation of the weights (and of the bias) over that of PyTorch's
  initialisation, ``1/√(3·fan_in)``: an imprint scaled to keep logits small, or an amplified
  next layer, is far outside what training moves it to;
* **sign balance** — ``|mean| / std`` of the weights: trap weights shrink each row's positive
  half, which shifts the mean by about a fifth of a standard deviation; initialisation is
  centred and training moves a whole matrix's mean little.

The client's score is the largest of these statistics divided by its bound (capped at 10⁶,
which dead rows get); it refuses the round when the score exceeds 1. The bounds are deliberately loose (false
alarms on honest rounds cost participation); the matrix measures both rates.

References
----------
.. [1] L. Fowl, J. Geiping, W. Czaja, M. Goldblum, T. Goldstein, "Robbing the Fed", ICLR 2022
   (Sec. 5 discusses detecting the imprint by inspecting the model).
.. [2] F. Boenisch et al., "When the Curious Abandon Honesty: Federated Learning Is Not
   Private", IEEE EuroS&P 2023 (Sec. 7: client-side inspection of trap weights).
.. [3] D. Pasquini, D. Francati, G. Ateniese, "Eluding Secure Aggregation in Federated Learning
   via Model Inconsistency", ACM CCS 2022 (Sec. 6: clients checking the model they receive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from defenses.client_checks.layers import WeightLayer, weight_layers
from fedguard.api import ClientCheck, ClientCheckOutput, TransformContext, require

_MAX_ROWS = 2048  # rows compared per matrix (the Gram matrix is rows²)
MAX_SCORE = 1e6  # scores are capped (a dead row scores this): finite in JSON round records


def max_row_cosine(weight: Tensor) -> Tensor:
    """``(n, rows, fan_in)`` → ``(n,)`` largest cosine similarity between two distinct rows
    (zero rows count as 0; a matrix of one row gives 0)."""
    w = weight[:, :_MAX_ROWS].double()
    rows = w.shape[1]
    if rows < 2:
        return torch.zeros(w.shape[0], dtype=torch.float64)
    unit = w / w.norm(dim=2, keepdim=True).clamp_min(1e-300)
    gram = unit @ unit.transpose(1, 2)  # (n, rows, rows)
    gram.diagonal(dim1=1, dim2=2).fill_(-1.0)
    return gram.amax(dim=(1, 2))


def layer_scores(
    received: Tensor, layer: WeightLayer, bounds: ParameterStatistics
) -> dict[str, Tensor]:
    """Each statistic of one layer divided by its bound, ``(n,)`` per statistic."""
    n = received.shape[0]
    weight = received[:, layer.weight].reshape(n, layer.rows, layer.fan_in).double()
    flat = weight.reshape(n, -1)
    std = flat.std(dim=1)  # (n,)
    low, high = bounds.scale_range
    scale = std / layer.init_std
    scores = {
        "duplicated_rows": max_row_cosine(weight) / bounds.max_row_cosine,
        "weight_scale": torch.maximum(scale / high, low / scale.clamp_min(1e-300)),
        "sign_balance": flat.mean(dim=1).abs() / std.clamp_min(1e-300) / bounds.max_mean_to_std,
    }
    dead = (weight.abs().amax(dim=2) == 0).any(dim=1) | (std == 0)  # (n,)
    if layer.bias is not None and layer.rows > 1:
        bias = received[:, layer.bias].double()
        bias_std = bias.std(dim=1)
        bias_scale = bias_std / layer.init_std
        scores["bias_scale"] = torch.maximum(bias_scale / high, low / bias_scale.clamp_min(1e-300))
        dead |= bias_std == 0
    scores["dead_rows"] = torch.where(dead, MAX_SCORE, 0.0).double()
    return {key: value.clamp_max(MAX_SCORE) for key, value in scores.items()}


@dataclass(frozen=True)
class ParameterStatistics(ClientCheck):
    """Refuse a received model whose layers look unlike initialisation or training.

    Parameters
    ----------
    max_row_cosine
        Alarm when two distinct rows of a weight matrix are more similar than this.
    scale_range
        Alarm when a layer's weight (or bias) standard deviation is outside this range of
        multiples of PyTorch's initialisation, ``1/√(3·fan_in)``.
    max_mean_to_std
        Alarm when ``|mean| / std`` of a weight matrix exceeds this.

    References
    ----------
    .. [1] D. Pasquini, D. Francati, G. Ateniese, "Eluding Secure Aggregation in Federated
       Learning via Model Inconsistency", ACM CCS 2022.
    .. [2] F. Boenisch et al., "When the Curious Abandon Honesty: Federated Learning Is Not
       Private", IEEE EuroS&P 2023.
    """

    max_row_cosine: float = 0.99
    scale_range: tuple[float, float] = (0.1, 10.0)
    max_mean_to_std: float = 0.15

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        require(0.0 < self.max_row_cosine <= 1.0, "max_row_cosine", "in (0, 1]")
        low, high = self.scale_range if len(self.scale_range) == 2 else (0.0, 0.0)
        require(
            len(self.scale_range) == 2 and 0.0 < low < 1.0 < high and math.isfinite(high),
            "scale_range",
            "[low, high] with 0 < low < 1 < high",
        )
        require(self.max_mean_to_std > 0.0, "max_mean_to_std", "a number > 0")

    def statistics(self, received: Tensor, layout: Any) -> dict[str, Tensor]:
        """Every layer's statistics over their bounds, ``{layer/statistic: (n,)}``."""
        out = {}
        for layer in weight_layers(layout):
            for key, value in layer_scores(received, layer, self).items():
                out[f"{layer.name}/{key}"] = value
        return out

    def check(self, received: Tensor, layout: Any, ctx: TransformContext) -> ClientCheckOutput:
        stats = self.statistics(received, layout)
        if not stats:
            score = torch.zeros(received.shape[0], dtype=torch.float64)
        else:
            score = torch.stack(list(stats.values())).amax(dim=0)  # (n,)
        return ClientCheckOutput(alarms=score > 1.0, scores=score)


__all__ = ["ParameterStatistics", "layer_scores", "max_row_cosine"]
