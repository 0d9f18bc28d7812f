"""Shared helpers of the model-poisoning attacks (pure functions on tensors), and the common
base of the AGR-agnostic Min-Max / Min-Sum attacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fedguard.api import AttackContext, ModelAttack, require
from fedguard.errors import ConfigError


def check_honest(honest: Tensor, attack: str) -> Tensor:
    """The ``(h, d)`` honest updates, or a one-sentence error."""
    if not isinstance(honest, Tensor) or honest.dim() != 2 or honest.shape[0] == 0:
        shape = tuple(honest.shape) if isinstance(honest, Tensor) else type(honest).__name__
        raise ConfigError(
            f"attack {attack!r} needs at least one honest update as an (h, d) tensor; got {shape}."
        )
    return honest


def own_updates(ctx: AttackContext, attack: str) -> Tensor:
    """The ``(b, d)`` updates the malicious clients computed honestly on their own data."""
    own = ctx.own_updates
    if own.dim() != 2 or own.shape[0] != ctx.n_malicious:
        raise ConfigError(
            f"attack {attack!r} needs own_updates with one row per malicious client "
            f"({ctx.n_malicious}); got shape {tuple(own.shape)}."
        )
    return own


def repeat_rows(vector: Tensor, count: int) -> Tensor:
    """``(count, d)`` copies of a ``(d,)`` vector."""
    return vector[None, :].expand(count, -1).clone()


def perturbation(honest: Tensor, kind: str) -> Tensor:
    """Shejwalkar & Houmansadr's perturbation ∇p of the benign mean.

    ``unit_vec``: μ/‖μ‖; ``sign``: sign(μ); ``std``: coordinate-wise standard deviation (n − 1
    denominator; zero for a single row). The attack subtracts γ∇p.
    """
    mu = honest.mean(dim=0)
    if kind == "unit_vec":
        return mu / torch.linalg.vector_norm(mu).clamp_min(torch.finfo(mu.dtype).tiny)
    if kind == "sign":
        return torch.sign(mu)
    if kind == "std":
        if honest.shape[0] < 2:
            return torch.zeros_like(mu)
        return honest.std(dim=0, correction=1)
    raise ConfigError(f"perturbation must be 'unit_vec', 'sign' or 'std'; got {kind!r}.")


PERTURBATIONS = ("unit_vec", "sign", "std")


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """``(n, n)`` squared Euclidean distances of the rows of ``(n, d)`` from one Gram matrix
    (rows centred first for precision)."""
    xc = x - x.mean(dim=0, keepdim=True)
    gram = xc @ xc.T
    sq = gram.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)
    d2 = 0.5 * (d2 + d2.T)
    d2.fill_diagonal_(0.0)
    return d2


def halving_search(feasible: Callable[[float], bool], gamma_init: float, tolerance: float) -> float:
    """The authors' γ search for Min-Max/Min-Sum: start at ``gamma_init``, step ± half the previous
    step (up when feasible, down when not) until the step between the last feasible γ and the
    current one is at most ``tolerance``; return the last **feasible** γ (0 when none was)."""
    gamma = gamma_init
    step = gamma_init
    gamma_ok = 0.0
    while abs(gamma_ok - gamma) > tolerance:
        if feasible(gamma):
            gamma_ok = gamma
            gamma = gamma + step / 2
        else:
            gamma = gamma - step / 2
        step = step / 2
    return gamma_ok


def deviation_sq_distances(honest: Tensor, direction: Tensor) -> Callable[[float], Tensor]:
    """γ ↦ ``(h,)`` squared distances ‖μ − γ∇p − x_i‖², in closed form (a quadratic in γ)."""
    x = honest.to(torch.float64)
    a = x.mean(dim=0)[None, :] - x  # (h, d)
    p = direction.to(torch.float64)
    a_sq = (a * a).sum(dim=1)  # (h,)
    a_dot_p = a @ p  # (h,)
    p_sq = float(p @ p)

    def distances(gamma: float) -> Tensor:
        return (a_sq - 2.0 * gamma * a_dot_p + gamma * gamma * p_sq).clamp_min(0.0)

    return distances


def agr_agnostic_gamma(
    honest: Tensor, direction: Tensor, reduce: str, gamma_init: float, tolerance: float
) -> float:
    """Largest γ (the authors' halving search) keeping ``μ − γ∇p`` within the honest spread.

    ``reduce="max"`` (Min-Max): ``max_i ‖μ − γ∇p − x_i‖ ≤ max_{i,j} ‖x_i − x_j‖``;
    ``reduce="sum"`` (Min-Sum): ``Σ_i ‖μ − γ∇p − x_i‖² ≤ min_i Σ_j ‖x_i − x_j‖²``.
    """
    d2 = pairwise_sq_distances(honest.double())  # (h, h)
    distances = deviation_sq_distances(honest, direction)
    if reduce == "max":
        bound = float(d2.max())
        return halving_search(lambda g: float(distances(g).max()) <= bound, gamma_init, tolerance)
    if reduce == "sum":
        bound = float(d2.sum(dim=1).min())
        return halving_search(lambda g: float(distances(g).sum()) <= bound, gamma_init, tolerance)
    raise ConfigError(f"reduce must be 'max' or 'sum'; got {reduce!r}.")


@dataclass(frozen=True)
class AgrAgnosticAttack(ModelAttack):
    """Min-Max / Min-Sum: every malicious client sends ``μ − γ∇p``, γ by
    :func:`agr_agnostic_gamma` with the subclass's ``reduce`` (its registry name is
    ``attack_name``)."""

    attack_name: ClassVar[str]
    reduce: ClassVar[str]
    perturbation: str = "unit_vec"
    gamma_init: float = 10.0
    tolerance: float = 1e-5

    def __post_init__(self) -> None:
        require(self.perturbation in PERTURBATIONS, "perturbation", "'unit_vec', 'sign' or 'std'")
        require(self.gamma_init > 0, "gamma_init", "a positive number")
        require(self.tolerance > 0, "tolerance", "a positive number")

    def __call__(self, honest: Tensor, ctx: AttackContext) -> Tensor:
        x = check_honest(honest, self.attack_name)
        p = perturbation(x, self.perturbation)
        gamma = agr_agnostic_gamma(x, p, self.reduce, self.gamma_init, self.tolerance)
        return repeat_rows(x.mean(dim=0) - gamma * p, ctx.n_malicious)
