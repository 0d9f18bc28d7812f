"""Server optimizers applied to the aggregated pseudo-gradient ``−Δ``.

* ``sgd``: θ ← θ + η Δ (η = 1 is FedAvg);
* ``momentum`` (FedAvgM, Hsu et al. 2019): v ← β v + Δ; θ ← θ + η v;
* ``adam`` (FedAdam, Reddi et al. 2021): m ← β₁m + (1−β₁)Δ; v ← β₂v + (1−β₂)Δ²;
  θ ← θ + η m / (√v + τ) (no bias correction, as in the paper).

References
----------
Hsu, Qi & Brown, "Measuring the effects of non-identical data distribution", 2019.
Reddi et al., "Adaptive federated optimization", ICLR 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ServerOptimizerConfig:
    optimizer: str = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3


def server_step(
    cfg: ServerOptimizerConfig, params: Tensor, delta: Tensor, state: dict[str, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """One server update; returns new parameters and optimizer state (explicit, for resuming)."""
    if cfg.optimizer == "sgd":
        return params + cfg.learning_rate * delta, state
    if cfg.optimizer == "momentum":
        v = cfg.momentum * state.get("velocity", torch.zeros_like(delta)) + delta
        return params + cfg.learning_rate * v, {"velocity": v}
    m = cfg.beta1 * state.get("m", torch.zeros_like(delta)) + (1 - cfg.beta1) * delta
    v = cfg.beta2 * state.get("v", torch.zeros_like(delta)) + (1 - cfg.beta2) * delta.square()
    return params + cfg.learning_rate * m / (v.sqrt() + cfg.tau), {"m": m, "v": v}
