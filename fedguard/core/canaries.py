"""Client-level canaries for federated learning: fixed random unit directions, and their cosines.

A canary client's update is ``clip_norm · c_j`` for a fixed direction ``c_j`` drawn uniformly on the
unit sphere of the model's parameter space; each canary is inserted with probability ½. The
auditor's statistic for canary j is the cosine between c_j and the final model delta (or, when
every round's aggregate is released, the largest cosine over rounds). For a direction independent
of the model delta the cosine has mean 0 and variance exactly ``1/d`` (≈ N(0, 1/d) for large d).

Both the canary plugin (``attacks/canaries``) and the audit compute directions and inclusion with
the functions below, so the two always agree for a given seed.

References
----------
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023* (inclusion with probability ½).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.rng import torch_generator

#: Stream names in :mod:`fedguard.rng` (round −1: drawn once, before training; the stream's
#: "client" slot holds the canary index).
DIRECTION_STREAM = "audit.canary_directions"
INCLUSION_STREAM = "audit.canary_inclusion"


def canary_direction(index: int, dimension: int, seed: int) -> Tensor:
    """``(dimension,)`` float32 unit vector of canary ``index``: a normalised Gaussian draw.

    Drawn from its own stream ``(seed, −1, index, "audit.canary_directions")``, so a canary's
    direction depends only on its index and the seed, never on how many canaries there are.

    References
    ----------
    Andrew et al. (2024) (canary updates are random unit vectors).
    """
    require(index >= 0, "index", "≥ 0")
    require(dimension >= 2, "dimension", "at least 2")
    generator = torch_generator(seed, -1, index, DIRECTION_STREAM)
    draw = torch.randn(dimension, generator=generator, dtype=torch.float32)  # (d,)
    return draw / torch.linalg.vector_norm(draw.double()).to(torch.float32)


def canary_directions(n_canaries: int, dimension: int, seed: int) -> Tensor:
    """``(n_canaries, dimension)`` float32 rows uniform on the unit sphere (canaries 0..m−1).

    References
    ----------
    Andrew et al. (2024).
    """
    require(n_canaries >= 1, "n_canaries", "a positive integer")
    require(dimension >= 2, "dimension", "at least 2")
    return torch.stack([canary_direction(j, dimension, seed) for j in range(n_canaries)])


def canary_included(index: int, seed: int, probability: float = 0.5) -> bool:
    """Whether canary ``index`` is inserted (w.p. ``probability``), from its own stream
    ``(seed, −1, index, "audit.canary_inclusion")``.

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (each canary inserted with probability ½).
    """
    require(index >= 0, "index", "≥ 0")
    require(0.0 < probability < 1.0, "probability", "in (0, 1)")
    generator = torch_generator(seed, -1, index, INCLUSION_STREAM)
    return bool(torch.rand(1, generator=generator, dtype=torch.float64).item() < probability)


def canary_inclusion(n_canaries: int, seed: int, probability: float = 0.5) -> Tensor:
    """``(n_canaries,)`` bool: which of canaries 0..m−1 are inserted (:func:`canary_included`).

    References
    ----------
    Steinke, Nasr and Jagielski (2023) (each canary inserted with probability ½).
    """
    require(n_canaries >= 1, "n_canaries", "a positive integer")
    return torch.tensor([canary_included(j, seed, probability) for j in range(n_canaries)])


def canary_cosines(model_delta: Tensor, directions: Tensor) -> Tensor:
    """``(m,)`` float64 cosines between a ``(d,)`` model delta and ``(m, d)`` canary directions.

    A zero model delta gives cosines of 0.

    References
    ----------
    Andrew et al. (2024) (the canary statistic).
    """
    require(model_delta.dim() == 1, "model_delta", "a 1-D tensor (d,)")
    require(
        directions.dim() == 2 and directions.shape[1] == model_delta.shape[0],
        "directions",
        "a (m, d) tensor with d equal to the model delta's length",
    )
    return canary_round_cosines(model_delta.unsqueeze(0), directions)[0]


def canary_round_cosines(round_deltas: Tensor, directions: Tensor) -> Tensor:
    """``(T, m)`` float64 cosines between each of ``T`` round deltas ``(T, d)`` and each canary.

    References
    ----------
    Andrew et al. (2024) (all iterates released).
    """
    require(round_deltas.dim() == 2, "round_deltas", "a 2-D tensor (T, d)")
    require(
        directions.dim() == 2 and directions.shape[1] == round_deltas.shape[1],
        "directions",
        "a (m, d) tensor with d equal to the round deltas' length",
    )
    deltas = round_deltas.to(torch.float64)  # (T, d)
    dirs = directions.to(torch.float64)  # (m, d)
    dots = deltas @ dirs.T  # (T, m)
    norms = torch.linalg.vector_norm(deltas, dim=1, keepdim=True) * torch.linalg.vector_norm(
        dirs, dim=1
    )  # (T, m)
    return torch.where(norms > 0, dots / norms.clamp_min(1e-300), torch.zeros_like(dots))


def canary_max_round_cosines(round_deltas: Tensor, directions: Tensor) -> Tensor:
    """``(m,)`` the largest cosine of each canary over the ``T`` rounds.

    References
    ----------
    Andrew et al. (2024).
    """
    return canary_round_cosines(round_deltas, directions).amax(dim=0)
