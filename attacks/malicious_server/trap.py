"""Trap weights (Boenisch et al.): a first layer whose ReLU units each fire for few samples.

Every row of the first fully connected layer gets random magnitudes, a random half of them
negative, and its positive half scaled down by ``positive_scale < 1``: on non-negative inputs
(pixels) the pre-activation is then negative for most samples, so a unit fires for one sample of
a batch far more often than at random initialisation. A row fired by exactly one sample ``n``
gives ``∂L/∂W_i ÷ ∂L/∂b_i = x_n`` exactly (the ratio of a rank-one row); rows fired by several
samples give mixtures, which the recovery sets aside by preferring inputs that several rows
agree on (:func:`attacks.inversion.analytic.select_distinct`). The rest of the model is left as
received; the recovery rate falls with the batch size.

References
----------
.. [1] F. Boenisch, A. Dziedzic, R. Schuster, A. S. Shamsabadi, I. Shumailov, N. Papernot,
   "When the Curious Abandon Honesty: Federated Learning Is Not Private", IEEE EuroS&P 2023.
.. [2] L. T. Phong, Y. Aono, T. Hayashi, L. Wang, S. Moriai, "Privacy-Preserving Deep Learning
   via Additively Homomorphic Encryption", IEEE TIFS 13(5), 2018 (the ratio for one sample).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.inversion.analytic import fc_input_candidates, in_range_first, select_distinct
from attacks.malicious_server.layers import FirstLayer


def trap_weight_matrix(
    rows: int, inputs: int, positive_scale: float, generator: torch.Generator
) -> Tensor:
    """``(rows, inputs)`` trap weights: ``|N(0, 1/inputs)|`` magnitudes, a random half of each
    row negated, the positive half multiplied by ``positive_scale``."""
    magnitude = torch.randn(rows, inputs, generator=generator, dtype=torch.float64).abs()
    magnitude /= inputs**0.5
    order = torch.rand(rows, inputs, generator=generator, dtype=torch.float64).argsort(dim=1)
    negative = order < inputs // 2  # (rows, inputs): a random half of each row
    return torch.where(negative, -magnitude, positive_scale * magnitude)


@torch.no_grad()
def trap_imprint(
    params: Tensor, layer: FirstLayer, positive_scale: float, generator: torch.Generator
) -> Tensor:
    """The ``(d,)`` parameters with trap weights in the first layer (its bias as received)."""
    out = params.detach().clone()
    weight = trap_weight_matrix(layer.rows, layer.inputs, positive_scale, generator)
    out[layer.weight] = weight.reshape(-1).to(out.dtype)
    return out


def trap_recovery(
    weight_update: Tensor,
    bias_update: Tensor,
    n_samples: int,
    data_range: tuple[float, float] | None,
    relative_tol: float = 1e-3,
) -> Tensor:
    """Up to ``n_samples`` inputs ``(m, F)`` from the first layer's ``(rows, F)`` weight and
    ``(rows,)`` bias rows of an update: the ratio of every row whose bias entry is above
    ``relative_tol`` of the largest (smaller ones are rounding noise), candidates outside the
    data range set aside, inputs several rows agree on first."""
    candidates = fc_input_candidates(weight_update.double(), bias_update.double(), relative_tol)
    candidates = in_range_first(candidates, data_range, n_samples)
    return select_distinct(candidates, n_samples, relative_tol=1e-2)


__all__ = ["trap_imprint", "trap_recovery", "trap_weight_matrix"]
