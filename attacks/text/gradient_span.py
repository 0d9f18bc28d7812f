"""The low-rank span test at the heart of DAGER.

For a linear layer ``z = W x`` applied to the ``n`` token inputs ``x_1 … x_n`` of a batch, the
weight gradient is ``∂L/∂W = Σ_i δ_i x_iᵀ``: its rows lie in ``span{x_i}``, a subspace of
dimension ``rank ≤ n``. When ``n`` is below the input dimension, a candidate input belongs to the
batch (up to a measure-zero coincidence) exactly when it lies in that span.

References
----------
Petrov, Dimitrov, Baader, Müller, Vechev. "DAGER: Exact Gradient Inversion for Large Language
Models." NeurIPS 2024 (Lemma 5.1 and Theorem 5.2: the span of the first attention layer's
gradient and the span test).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GradientSpan:
    """An orthonormal basis of the row space of an observed weight gradient.

    ``basis`` is ``(k, rank)`` (columns orthonormal, float64); ``dimension`` is ``k``, the
    dimension the rows live in; ``saturated`` is True when the rank reached the largest rank the
    gradient's shape allows — the span then need not be the batch's and the test proves nothing.
    """

    basis: Tensor  # (k, rank)
    rank: int
    dimension: int
    saturated: bool
    singular_values: Tensor  # (min(out, k),) descending


def numerical_rank(singular_values: Tensor, rank_tolerance: float, gap: float) -> int:
    """Rank of a spectrum: the position of its largest drop ``s_i / s_{i+1}`` when that drop is
    at least ``gap`` (the batch's directions above, the update's rounding noise below: a float32
    update carries a flat noise floor 1e-6–1e-4 below the largest value, while a batch's
    spectrum decays smoothly); otherwise the count of values above ``rank_tolerance`` × the
    largest. Values below ``rank_tolerance`` × the largest never count."""
    s = singular_values.double()
    if s.numel() == 0 or s[0] <= 0:
        return 0
    above = int((s > rank_tolerance * s[0]).sum())
    if above < s.numel():  # the drop to the first value below the floor counts too
        ratios = s[:above] / s[1 : above + 1].clamp_min(1e-300)
    else:
        ratios = s[:-1] / s[1:].clamp_min(1e-300)
    if ratios.numel():
        best = int(torch.argmax(ratios))
        if float(ratios[best]) >= gap:
            return best + 1
    return above


def gradient_span(
    weight_gradient: Tensor, rank_tolerance: float = 1e-7, gap: float = 20.0
) -> GradientSpan:
    """Row space of ``weight_gradient`` ``(out, k)`` with its :func:`numerical_rank`.

    The rank is *saturated* when it equals ``min(out, k)``: the rows then span everything they
    could and membership in the span says nothing about the batch (``n ≥ k`` tokens).
    """
    g = weight_gradient.detach().double()
    _, s, vh = torch.linalg.svd(g, full_matrices=False)  # vh: (min(out, k), k)
    rank = numerical_rank(s, rank_tolerance, gap)
    return GradientSpan(
        basis=vh[:rank].T.contiguous(),
        rank=rank,
        dimension=g.shape[1],
        saturated=rank >= min(g.shape),
        singular_values=s,
    )


def span_distance(span: GradientSpan, vectors: Tensor) -> Tensor:
    """Relative distance of each vector to the span: ``‖v − UUᵀv‖ / ‖v‖`` in float64.

    ``(..., k) → (...)``; 0 for a vector in the span, ≈ ``sqrt(1 − rank/k)`` for a random one.
    A zero vector gets distance 1 (it carries no evidence).
    """
    v = vectors.detach().double()
    norm = v.norm(dim=-1)
    residual = v - (v @ span.basis) @ span.basis.T
    return torch.where(norm > 0, residual.norm(dim=-1) / norm.clamp_min(1e-300), 1.0)


__all__ = ["GradientSpan", "gradient_span", "span_distance"]
