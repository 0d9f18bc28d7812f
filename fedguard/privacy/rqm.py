"""Rényi DP of the Randomized Quantization Mechanism (RQM), computed exactly and numerically.

Mechanism (Youn et al. 2023): an input x ∈ [−c, c] is quantized onto m levels
B(i) = −(c + Δ) + 2i(c + Δ)/(m − 1), i = 0 … m − 1 (Δ = ``padding``); the two end levels are
always kept and every interior level independently with probability q (``keep_probability``);
x is rounded to its kept neighbours a ≤ x ≤ b, to b with probability (x − a)/(b − a) (unbiased).

Exact output distribution in O(m²) per input: for x ∈ [B(j), B(j + 1)] the lower kept level L and
the upper kept level U are independent, P(L = 0) = (1 − q)^j, P(L = i) = q(1 − q)^(j − i) for
0 < i ≤ j; P(U = m − 1) = (1 − q)^(m − 2 − j), P(U = r) = q(1 − q)^(r − j − 1) for j < r < m − 1.

Worst case over inputs. The Rényi divergence D_α(P_x ‖ P_x') is maximised over all ordered
pairs of a grid of inputs that contains ±c, every level inside (−c, c) and a uniform grid. It is
searched, not assumed; the grid is also sufficient: within a cell [B(j), B(j+1)] the output
distribution is affine in x, and Σ_k p_k^α q_k^(1 − α) is jointly convex in (p, q) for α > 1, so
on each product of cells the maximum sits at a corner — a point of the grid. The tests check a
dense random grid never beats it.

Unit and composition: the guarantee is per coordinate, for any change of the coordinate's value
within [−c, c]; a vector of d coordinates whose values may all change composes d-fold (RDP × d),
and rounds compose additively.

References
----------
Youn, Hu, Ziani, Abernethy. "Randomized Quantization is All You Need for Differential Privacy in
Federated Learning." 2023.
Mironov. "Rényi Differential Privacy." CSF 2017 (composition; D_∞ = pure ε).
van Erven, Harremoës. "Rényi Divergence and Kullback-Leibler Divergence." IEEE Trans. Inf.
Theory 2014 (Theorems 3 and 4: D_α is non-decreasing in α, with limit D_∞).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from fedguard.privacy.events import RandomizedQuantization

DEFAULT_GRID_POINTS = 33


def rqm_levels(clip: float, padding: float, levels: int) -> np.ndarray:
    """The m quantization levels B(0) … B(m − 1), shape ``(m,)``."""
    top = clip + padding
    return -top + 2.0 * np.arange(levels) * top / (levels - 1)


def rqm_distribution(
    inputs: np.ndarray, clip: float, padding: float, levels: int, keep_probability: float
) -> np.ndarray:
    """Exact output distribution of RQM for each input, shape ``(n_inputs, m)`` over the levels.

    Inputs are clipped to ``[-clip, clip]`` first (as the mechanism does). O(m²) per input,
    vectorised over inputs.
    """
    x = np.clip(np.asarray(inputs, dtype=np.float64).reshape(-1), -clip, clip)  # (G,)
    m, q = levels, keep_probability
    b = rqm_levels(clip, padding, m)  # (m,)
    step = b[1] - b[0]
    j = np.clip(np.floor((x - b[0]) / step).astype(np.int64), 0, m - 2)  # (G,) cell index
    idx = np.arange(m)  # (m,)
    jj = j[:, None]  # (G, 1)
    with np.errstate(divide="ignore"):
        log1mq = math.log1p(-q) if q < 1 else -math.inf
    # P(L = i): i ≤ j
    exp_l = np.where(idx[None, :] == 0, jj, jj - idx[None, :])  # (G, m)
    p_lower = np.where(idx[None, :] == 0, 1.0, q) * _pow1mq(exp_l, log1mq)
    p_lower = np.where(idx[None, :] <= jj, p_lower, 0.0)
    # P(U = r): r ≥ j + 1
    exp_u = np.where(idx[None, :] == m - 1, m - 2 - jj, idx[None, :] - jj - 1)
    p_upper = np.where(idx[None, :] == m - 1, 1.0, q) * _pow1mq(exp_u, log1mq)
    p_upper = np.where(idx[None, :] >= jj + 1, p_upper, 0.0)
    joint = p_lower[:, :, None] * p_upper[:, None, :]  # (G, m_lower, m_upper)
    gap = b[None, :] - b[:, None]  # (m, m): B_r − B_i
    with np.errstate(divide="ignore", invalid="ignore"):
        up = (x[:, None, None] - b[None, :, None]) / gap[None, :, :]  # (G, m, m)
    up = np.where(joint > 0, up, 0.0)
    out = (joint * up).sum(axis=1) + (joint * (1.0 - up)).sum(axis=2)  # (G, m)
    return out


def _pow1mq(exponent: np.ndarray, log1mq: float) -> np.ndarray:
    """(1 − q)^exponent, with 0^0 = 1 and negative exponents (masked later) mapped to 0."""
    e = exponent.astype(np.float64)
    with np.errstate(invalid="ignore"):
        out = np.where(e == 0, 1.0, np.exp(np.where(e > 0, e * log1mq, -np.inf)))
    return out


_LOG_ZERO = -1e30  # stands for ln 0: keeps 0 · ln 0 terms at 0 without inf − inf
_INFINITE = 1e20  # divergences above this are reported as inf


def renyi_divergence_matrix(
    dists: np.ndarray, order: float, rows: np.ndarray | None = None
) -> np.ndarray:
    """D_α(P_a ‖ P_b) for every ordered pair of rows of ``dists`` (G, m), shape ``(R, G)``.

    ``rows`` restricts a to those row indices (default: all, R = G); inf where P_b = 0 < P_a.
    """
    with np.errstate(divide="ignore"):
        logp = np.maximum(np.log(dists), _LOG_ZERO)  # (G, m)
    la = logp if rows is None else logp[rows]  # (R, m)
    terms = np.multiply.outer(la * order, np.ones(logp.shape[0]))  # (R, m, G)
    terms = terms.transpose(0, 2, 1).copy()  # (R, G, m)
    terms += (1.0 - order) * logp[None, :, :]
    top = terms.max(axis=-1)  # (R, G)
    terms -= top[..., None]
    np.exp(terms, out=terms)
    out = (top + np.log(terms.sum(axis=-1))) / (order - 1.0)
    return np.where(out > _INFINITE, np.inf, out)


def rqm_input_grid(clip: float, padding: float, levels: int, grid_points: int) -> np.ndarray:
    """Inputs searched for the worst case: ±c, the levels inside (−c, c) and a uniform grid."""
    b = rqm_levels(clip, padding, levels)
    inner = b[(b > -clip) & (b < clip)]
    grid = np.linspace(-clip, clip, grid_points)
    return np.unique(np.concatenate([[-clip, clip], inner, grid]))


def rqm_coordinate_rdp(
    clip: float,
    padding: float,
    levels: int,
    keep_probability: float,
    orders: Sequence[float],
    grid_points: int = DEFAULT_GRID_POINTS,
) -> np.ndarray:
    """Per-coordinate RDP ε(α) = max over grid input pairs of D_α(P_x ‖ P_x'), ``(n_orders,)``."""
    grid = rqm_input_grid(clip, padding, levels, grid_points)  # (G,)
    dists = rqm_distribution(grid, clip, padding, levels, keep_probability)  # (G, m)
    # The mechanism is symmetric, P_{-x}(k) = P_x(m - 1 - k), so D(P_x || P_x') =
    # D(P_{-x} || P_{-x'}): first arguments x <= 0 cover every pair of the symmetric grid.
    rows = np.flatnonzero(grid <= 0)
    return _max_divergence_per_order(dists, rows, [float(a) for a in orders])


def _max_divergence_per_order(
    dists: np.ndarray, rows: np.ndarray, orders: list[float]
) -> np.ndarray:
    """max over pairs (a ∈ rows, b) of D_α(P_a ‖ P_b) for every order, exactly, ``(n_orders,)``.

    D_α is non-decreasing in α and bounded by D_∞ = ln max_k P_a(k) / P_b(k) (van Erven &
    Harremoës 2014, Theorems 3 and 4). Orders are taken in increasing order; a pair whose D_∞ is
    below the maximum already found at a smaller order can never be the maximum again, so only
    the surviving pairs (a handful: the inputs near ±c) are evaluated — with the same
    log-sum-exp as :func:`renyi_divergence_matrix`. The first order evaluates every pair.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(dists)  # (G, m)
        ratio = logp[rows][:, None, :] - logp[None, :, :]  # (R, G, m)
    ratio = np.where(np.isneginf(logp[rows])[:, None, :], -np.inf, ratio)  # 0 · ln(0/·) = 0
    d_infinity = np.nan_to_num(ratio, nan=-np.inf).max(axis=-1)  # (R, G); +inf where P_b = 0
    out = np.empty(len(orders))
    best = -np.inf
    pairs = np.ones(d_infinity.shape, dtype=bool)
    for k in np.argsort(orders, kind="stable"):
        if best == np.inf:  # D_α is non-decreasing: infinite from here on
            out[k] = np.inf
            continue
        if best > -np.inf:
            # a relative margin keeps pairs that rounding could put level with the best
            pairs &= d_infinity >= best - 1e-9 * max(1.0, abs(best))
        if pairs.all():
            out[k] = float(renyi_divergence_matrix(dists, orders[k], rows).max())
        else:
            r_idx, g_idx = np.nonzero(pairs)
            out[k] = max(
                float(
                    renyi_divergence_matrix(
                        np.vstack([dists[rows[r]], dists[g_idx[r_idx == r]]]),
                        orders[k],
                        np.array([0]),
                    )[0, 1:].max()
                )
                for r in np.unique(r_idx)
            )
        best = max(best, out[k])
    return out


def rqm_pure_epsilon(
    clip: float,
    padding: float,
    levels: int,
    keep_probability: float,
    grid_points: int = DEFAULT_GRID_POINTS,
) -> float:
    """Pure ε per coordinate: max over grid pairs and outputs of ln(P_x(k) / P_x'(k)) (D_∞).

    For m = 2 this is ln(1 + 2c/Δ) (Youn et al. 2023).
    """
    grid = rqm_input_grid(clip, padding, levels, grid_points)
    dists = rqm_distribution(grid, clip, padding, levels, keep_probability)  # (G, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(dists)
        ratio = logp[:, None, :] - logp[None, :, :]  # (G, G, m)
    ratio = np.where(np.isneginf(logp[:, None, :]), -np.inf, ratio)
    return float(np.nanmax(ratio))


@functools.lru_cache(maxsize=256)
def _coordinate_rdp_cached(
    clip: float, padding: float, levels: int, keep_probability: float, orders: tuple[float, ...]
) -> np.ndarray:
    """Per-coordinate RDP, cached on the mechanism alone: the dimension only multiplies it, so
    a new number of coordinates (another model) never recomputes the divergences."""
    out = rqm_coordinate_rdp(clip, padding, levels, keep_probability, orders)
    out.setflags(write=False)
    return out


def rqm_rdp(event: RandomizedQuantization, orders: Sequence[float]) -> np.ndarray:
    """RDP of one RQM release of ``event.coordinates`` coordinates: per-coordinate × d."""
    per_coordinate = _coordinate_rdp_cached(
        event.clip,
        event.padding,
        event.levels,
        event.keep_probability,
        tuple(float(a) for a in orders),
    )
    return event.coordinates * per_coordinate


def rqm_bits_per_coordinate(levels: int) -> float:
    """Communication cost of one quantized coordinate: log2(m) bits (the level's index)."""
    return math.log2(levels)


__all__ = [
    "DEFAULT_GRID_POINTS",
    "renyi_divergence_matrix",
    "rqm_bits_per_coordinate",
    "rqm_coordinate_rdp",
    "rqm_distribution",
    "rqm_input_grid",
    "rqm_levels",
    "rqm_pure_epsilon",
    "rqm_rdp",
]
