"""Robbing the Fed's imprint: bins on a feature's cumulative distribution, and exact recovery.

The first fully connected layer ``z = Wx + b`` (ReLU after it) is set, for its first ``k`` rows,
to ``W_i = s·a`` and ``b_i = −s·c_i`` with a direction ``a`` and increasing thresholds
``c_0 < c_1 < … < c_{k−1}`` placed at the quantiles ``i/k`` of the feature ``f(x) = a·x`` (the
attacker's public estimate of its distribution), so row ``i`` fires for the samples with
``f(x) > c_i``. The next layer gets the same column ``v`` for all ``k`` rows, so every row passes
back the same ``γ_n = vᵀ ∂L_n/∂(next layer's output)`` for a sample ``n``. With the mean loss over
``B`` samples::

    ∂L/∂W_i = (1/B) Σ_{n: f_n > c_i} γ_n x_n,      ∂L/∂b_i = (1/B) Σ_{n: f_n > c_i} γ_n

and the difference of consecutive rows keeps only the samples of bin ``(c_i, c_{i+1}]``
(the last row alone is bin ``(c_{k−1}, ∞)``). A sample alone in its bin is returned exactly::

    x_n = (∂L/∂W_i − ∂L/∂W_{i+1}) / (∂L/∂b_i − ∂L/∂b_{i+1}).

The ratio is invariant to any positive or negative scalar on the whole update, so it holds for an
update ``−η·∇L`` (FedSGD), for a sum of weighted updates of several clients (secure aggregation:
the bins are shared by all of them) and for the fixed-point encoding up to its rounding.
With ``k`` equally likely bins and ``N`` samples, each sample is alone with probability
``(1 − 1/k)^{N−1}`` (the birthday bound).

References
----------
.. [1] L. Fowl, J. Geiping, W. Czaja, M. Goldblum, T. Goldstein, "Robbing the Fed: Directly
   Obtaining Private Data in Federated Learning with Modified Models", ICLR 2022.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.malicious_server.layers import FirstLayer


def random_direction(n_inputs: int, generator: torch.Generator) -> Tensor:
    """A unit-norm Gaussian direction ``(n_inputs,)``: the feature is ``a·x`` (continuous, so
    two different samples almost never tie)."""
    a = torch.randn(n_inputs, generator=generator, dtype=torch.float64)
    return a / a.norm()


def bin_thresholds(public_features: Tensor, direction: Tensor, n_bins: int) -> Tensor:
    """Thresholds ``(n_bins,)`` at the quantiles ``0, 1/k, …, (k−1)/k`` of ``a·x`` over the
    public samples ``(M, F)``; the lowest is moved one span below the smallest value, so that
    every sample fires the first row (no sample falls under all bins)."""
    values = public_features.reshape(public_features.shape[0], -1).double() @ direction  # (M,)
    levels = torch.arange(n_bins, dtype=torch.float64) / n_bins
    thresholds = torch.quantile(values, levels)
    low, high = float(values.min()), float(values.max())
    thresholds[0] = low - max(high - low, 1e-12)
    return torch.cummax(thresholds, dim=0).values  # ties of the estimate: keep them ordered


@torch.no_grad()
def bin_imprint(
    params: Tensor,
    layer: FirstLayer,
    direction: Tensor,
    thresholds: Tensor,
    output_gain: float,
    logit_budget: float = 1.0,
) -> Tensor:
    """The ``(d,)`` parameters with the first layer's first ``k = len(thresholds)`` rows set to
    the bins, its other rows silenced (``W = 0``, ``b = −1``: they never fire), and the next
    layer's columns ``v = output_gain·(+1, −1, +1, …)`` on the bin rows (0 elsewhere, its bias 0).

    ``s`` keeps the next layer's outputs within ``±logit_budget`` for features up to the top
    threshold plus one span, so the softmax stays far from saturation and every ``γ_n`` is
    bounded away from zero (``|γ_n| ≥ output_gain·(1 − tanh(logit_budget))`` for an output layer).
    """
    k = int(thresholds.numel())
    if not 1 <= k <= layer.rows:
        raise ValueError(f"the imprint needs 1 to {layer.rows} bins; got {k}.")
    out = params.detach().clone()
    dtype = out.dtype
    span = float(thresholds[-1] - thresholds[0]) * 2.0 or 1.0
    scale = logit_budget / (output_gain * k * span)
    weight = torch.zeros(layer.rows, layer.inputs, dtype=torch.float64)
    bias = torch.full((layer.rows,), -1.0, dtype=torch.float64)
    weight[:k] = scale * direction.double()
    bias[:k] = -scale * thresholds.double()
    sign = 1.0 - 2.0 * (torch.arange(layer.next_outputs) % 2).double()  # (+1, −1, …)
    next_weight = torch.zeros(layer.next_outputs, layer.rows, dtype=torch.float64)
    next_weight[:, :k] = output_gain * sign[:, None]
    out[layer.weight] = weight.reshape(-1).to(dtype)
    out[layer.bias] = bias.to(dtype)
    out[layer.next_weight] = next_weight.reshape(-1).to(dtype)
    if layer.next_bias is not None:
        out[layer.next_bias] = 0.0
    return out


def bin_recovery(
    weight_update: Tensor, bias_update: Tensor, relative_tol: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """Inputs recovered from the ``(k, F)`` weight and ``(k,)`` bias rows of the imprint in an
    update (one client's, or a sum): one candidate per non-empty bin, ``(m, F)``, and the bin
    index of each ``(m,)``. Bins whose bias difference is below ``relative_tol`` of the largest
    are empty (their difference is rounding noise)."""
    w = weight_update.double()
    b = bias_update.double()
    dw = torch.cat([w[:-1] - w[1:], w[-1:]])  # (k, F): bin i = rows i minus i + 1
    db = torch.cat([b[:-1] - b[1:], b[-1:]])  # (k,)
    mag = db.abs()
    if float(mag.max()) == 0.0:
        return w[:0], torch.zeros(0, dtype=torch.long)
    keep = torch.nonzero(mag > relative_tol * mag.max()).flatten()
    return dw[keep] / db[keep, None], keep


def birthday_expectation(n_samples: int, n_bins: int) -> float:
    """Expected number of samples alone in their bin: ``N·(1 − 1/k)^{N−1}`` (equally likely
    bins, samples drawn independently)."""
    if n_samples <= 0:
        return 0.0
    return n_samples * (1.0 - 1.0 / n_bins) ** (n_samples - 1)


def expected_alone_without_replacement(bin_counts: Tensor, n_samples: int) -> float:
    """Expected number of samples alone in their bin when ``N`` samples are drawn without
    replacement from a pool whose bins hold ``bin_counts`` ``(k,)`` samples (``M`` in all):
    ``Σ_i m_i·(N/M)·C(M − m_i, N − 1) / C(M − 1, N − 1)`` (a pool sample is drawn with
    probability N/M, and is then alone when the other N − 1 come from outside its bin) — the exact birthday expectation for the
    pool's own bin masses."""
    counts = [int(c) for c in bin_counts.tolist()]
    pool = sum(counts)
    if n_samples <= 0 or n_samples > pool:
        return 0.0
    log_denominator = _log_binomial(pool - 1, n_samples - 1)
    total = 0.0
    for m in counts:
        if m and pool - m >= n_samples - 1:
            total += m * math.exp(_log_binomial(pool - m, n_samples - 1) - log_denominator)
    return total * n_samples / pool


def _log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def bins_of(features: Tensor, direction: Tensor, thresholds: Tensor) -> Tensor:
    """Bin index ``(N,)`` of each sample ``(N, F)``: the last threshold below ``a·x`` (−1 when
    below all of them)."""
    values = features.reshape(features.shape[0], -1).double() @ direction.double()
    return torch.searchsorted(thresholds.double().contiguous(), values, right=False) - 1


__all__ = [
    "bin_imprint",
    "bin_recovery",
    "bin_thresholds",
    "bins_of",
    "birthday_expectation",
    "expected_alone_without_replacement",
    "random_direction",
]
