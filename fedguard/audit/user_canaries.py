"""User-level canaries for DP across silos: canary users spread over several silos.

Audits ULDP-AVG's release — the sum over silos of every silo's weighted, clipped per-user
updates plus each silo's noise share — against its user-level claim, with the one-run bound
(Steinke et al. 2023). Canary user j holds records in ``silos_per_canary`` silos (random silos,
1–5 records in each), is inserted with probability ½, and when inserted and sampled in a round
every silo holding it sends the update ``clip_norm · 10 · c_j`` for its fixed unit direction c_j
(far outside the clip ball: after clipping each silo's copy sits on the sphere, the worst case).
The copies go through the same kernels as the defense (:func:`~fedguard.core.user_level.
user_weights`, :func:`~fedguard.core.user_level.bounded_silo_sums`), the silos add their shares
N(0, (z_actual·C)²/S), and the auditor scores each canary by the cosine of c_j with the sum of
the rounds' releases. Honest users' updates only shift the release by something independent of
the canaries; the audit leaves them out (the strongest auditor knows them).

A correct mechanism's lower bound stays below the claimed ε; a mechanism that under-weights the
bound across silos (a user counted once per silo) or adds less noise than it claims is caught.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*.
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024* (random canary directions).
Kato et al. "Uldp-FL: Federated Learning with Across-Silo User-Level Differential Privacy."
PVLDB 17(11), 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.core.canaries import canary_directions, canary_inclusion, canary_round_cosines
from fedguard.core.user_level import (
    WEIGHTINGS,
    bounded_silo_sums,
    sampled_users,
    user_level_event,
    user_pairs,
    user_weights,
)
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.audit.one_run import one_run_audit
from fedguard.privacy.events import Composed, PrivacyEvent
from fedguard.rng import torch_generator

#: How far outside the clip ball a canary's per-silo update lies (it is clipped back to C).
CANARY_OVERSHOOT = 10.0


@dataclass(frozen=True)
class UserCanaryDesign:
    """The mechanism audited and the canaries.

    ``noise_multiplier``: the claimed z (the ledger's); ``actual_noise_multiplier``: what the
    silos really add (``None``: the claim; 0: no noise — a broken mechanism the audit must
    catch); ``cross_silo_weights``: ``False`` plants the bug of a silo bounding only its own
    share (w = 1 per silo), which the audit must catch too.
    """

    n_canaries: int = 1000
    n_silos: int = 5
    silos_per_canary: int = 3
    rounds: int = 1
    noise_multiplier: float = 1.0
    actual_noise_multiplier: float | None = None
    clip_norm: float = 1.0
    user_sampling_rate: float = 1.0
    dimension: int = 4000
    weighting: str = "records"
    cross_silo_weights: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_canaries >= 10, "n_canaries", "an integer ≥ 10")
        require(self.n_silos >= 1, "n_silos", "an integer ≥ 1")
        require(
            1 <= self.silos_per_canary <= self.n_silos,
            "silos_per_canary",
            "between 1 and n_silos",
        )
        require(self.rounds >= 1, "rounds", "an integer ≥ 1")
        require(self.noise_multiplier > 0, "noise_multiplier", "a number > 0")
        actual = self.actual_noise_multiplier
        require(actual is None or actual >= 0, "actual_noise_multiplier", "a number ≥ 0 or null")
        require(self.clip_norm > 0, "clip_norm", "a number > 0")
        require(0 < self.user_sampling_rate <= 1, "user_sampling_rate", "a number in (0, 1]")
        require(self.dimension >= 2, "dimension", "an integer ≥ 2")
        require(self.weighting in WEIGHTINGS, "weighting", f"one of {list(WEIGHTINGS)}")

    def claimed_event(self) -> PrivacyEvent:
        """What the ledger records for ``rounds`` rounds (per user)."""
        one = user_level_event(self.noise_multiplier, self.clip_norm, self.user_sampling_rate)
        return one if self.rounds == 1 else Composed((one,), count=self.rounds)


def canary_layout(
    n_canaries: int, n_silos: int, silos_per_canary: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Padded (n_silos, width) user table of the canaries (−1 padding) and each silo's count:
    canary j in ``silos_per_canary`` random silos, 1–5 records in each."""
    gen = torch_generator(seed, -1, -1, "audit.user_canary_layout")
    per_silo: list[list[int]] = [[] for _ in range(n_silos)]
    for j in range(n_canaries):
        silos = torch.randperm(n_silos, generator=gen)[:silos_per_canary]
        records = torch.randint(1, 6, (silos_per_canary,), generator=gen)
        for s, n in zip(silos.tolist(), records.tolist(), strict=True):
            per_silo[s].extend([j] * n)
    counts = torch.tensor([len(ids) for ids in per_silo], dtype=torch.long)
    users = torch.full((n_silos, max(1, int(counts.max()))), -1, dtype=torch.long)
    for s, ids in enumerate(per_silo):
        users[s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return users, counts


def _canary_layout(design: UserCanaryDesign) -> tuple[Tensor, Tensor]:
    return canary_layout(design.n_canaries, design.n_silos, design.silos_per_canary, design.seed)


def user_canary_release(design: UserCanaryDesign) -> tuple[Tensor, Tensor, Tensor]:
    """``(released (d,), directions (m, d), included (m,))``: the sum over rounds of the sum over
    silos the server receives, with only canary users present."""
    m, d, silos = design.n_canaries, design.dimension, design.n_silos
    directions = canary_directions(m, d, design.seed).double()  # (m, d)
    included = canary_inclusion(m, design.seed)  # (m,)
    users, counts = _canary_layout(design)
    pairs = user_pairs(users, counts, list(range(silos)))
    weights = user_weights(pairs.user, pairs.count, design.weighting)
    if not design.cross_silo_weights:
        weights = torch.ones_like(weights)
    actual = design.noise_multiplier
    if design.actual_noise_multiplier is not None:
        actual = design.actual_noise_multiplier
    share = actual * design.clip_norm / math.sqrt(silos)
    released = torch.zeros(d, dtype=torch.float64)
    for t in range(design.rounds):
        present = included & sampled_users(m, design.user_sampling_rate, design.seed, t)
        rows = torch.nonzero(present[pairs.user]).flatten()
        updates = CANARY_OVERSHOOT * design.clip_norm * directions[pairs.user[rows]]  # (P, d)
        sums = bounded_silo_sums(updates, pairs.silo[rows], weights[rows], design.clip_norm, silos)
        if share > 0:
            gen = torch_generator(design.seed, t, -1, "audit.user_canary_noise")
            sums = sums + share * torch.randn(silos, d, generator=gen, dtype=torch.float64)
        released += sums.sum(0)
    return released, directions, included


def user_canary_audit(
    design: UserCanaryDesign,
    confidence: float = 0.95,
    delta: float = 1e-5,
    accountants: tuple[str, ...] = ("rdp", "pld"),
) -> dict[str, Any]:
    """One-run lower bound on the user-level ε of ``design`` next to the claimed ε.

    Returns ``epsilon_lower``, ``ceiling`` (the most this design can certify),
    ``epsilon_upper`` (smallest of ``accountants`` on the claimed event), ``upper_by_accountant``,
    ``lower_exceeds_upper`` and the design.
    """
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    released, directions, included = user_canary_release(design)
    scores = canary_round_cosines(released[None], directions)[0].numpy()  # (m,)
    bound = one_run_audit(scores, included.numpy(), confidence=confidence, delta=delta)
    event = design.claimed_event()
    upper = {name: get_accountant(name).epsilon(event, delta) for name in accountants}
    epsilon_upper = min(upper.values())
    return {
        "epsilon_lower": bound.epsilon,
        "ceiling": bound.details["ceiling"],
        "epsilon_upper": epsilon_upper,
        "upper_by_accountant": upper,
        "lower_exceeds_upper": bound.epsilon > epsilon_upper,
        "confidence": confidence,
        "delta": delta,
        "design": {k: getattr(design, k) for k in design.__dataclass_fields__},
    }


__all__ = ["CANARY_OVERSHOOT", "UserCanaryDesign", "user_canary_audit", "user_canary_release"]
