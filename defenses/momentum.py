"""Client (worker) momentum."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import ClientTransform, TransformContext, TransformOutput, require

MOMENTA_KEY = "momenta"
FORMS = ("exponential", "heavy_ball")


def momentum_step(previous: Tensor, update: Tensor, beta: float, form: str) -> Tensor:
    """One momentum step on ``(n, d)`` rows.

    ``exponential``: m ← β m + (1 − β) g; ``heavy_ball``: m ← β m + g.
    """
    if form == "exponential":
        return beta * previous + (1.0 - beta) * update
    return beta * previous + update


@dataclass(frozen=True)
class ClientMomentum(ClientTransform):
    """Each client sends its momentum instead of its raw update.

    Per client id i: ``m_i ← β m_i + (1 − β) Δ_i`` (``form="exponential"``, the default, as in
    Karimireddy et al. 2021) or ``m_i ← β m_i + Δ_i`` (``form="heavy_ball"``), with m_i = 0 before
    the client's first round (no bias correction). The momenta live in
    ``TransformOutput.state["momenta"]``, a mapping client id → ``(d,)`` tensor; entries of clients
    not sampled this round are carried over unchanged, so a client resumes its own momentum after
    skipping rounds (no decay while absent). Pairs with ``centered_clipping``.

    Parameters
    ----------
    beta : float
        β in [0, 1).
    form : str
        ``"exponential"`` or ``"heavy_ball"``.

    References
    ----------
    Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization." ICML 2021.
    Gu, Xiong et al. "DP-BREM: Differentially-Private and Byzantine-Robust Federated Learning with
    Client Momentum." USENIX Security 2025.
    """

    beta: float = 0.9
    form: str = "exponential"

    def __post_init__(self) -> None:
        require(0 <= self.beta < 1, "beta", "in [0, 1)")
        require(self.form in FORMS, "form", "'exponential' or 'heavy_ball'")

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        n, d = updates.shape
        require(len(ctx.client_ids) == n, "client_ids", f"one id per update row ({n})")
        momenta: dict[int, Tensor] = dict(ctx.state.get(MOMENTA_KEY, {}))
        zero = torch.zeros(d, dtype=updates.dtype, device=updates.device)
        previous = (
            torch.stack([momenta.get(int(c), zero).to(updates.dtype) for c in ctx.client_ids])
            if n > 0
            else updates.new_zeros((0, d))
        )  # (n, d)
        new = momentum_step(previous, updates, self.beta, self.form)
        for row, cid in enumerate(ctx.client_ids):
            momenta[int(cid)] = new[row].detach().clone()
        return TransformOutput(values=new, state={**ctx.state, MOMENTA_KEY: momenta})
