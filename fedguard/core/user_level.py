"""User-level contribution bounding across silos (ULDP-AVG): pure kernels on tensors.

A silo (client) holds records of many users; a user may hold records in several silos. The
unit of privacy is the user: the released sum must change by at most ``clip_norm`` when one
user's records are removed from *every* silo. ULDP-AVG bounds it in two steps:

1. **within a silo**, each user's records give one update Δ_{s,u} (local training on that user's
   records only), clipped to ``clip_norm`` C;
2. **across silos**, the clipped updates are weighted by w_{s,u} ≥ 0 with Σ_s w_{s,u} ≤ 1 for
   every user u, so ‖Σ_s w_{s,u} clip(Δ_{s,u})‖ ≤ Σ_s w_{s,u} C ≤ C. The weights of a user
   depend on that user's own record counts only (``"records"``: w_{s,u} = n_{s,u} / n_u, the
   paper's ULDP-AVG-w; ``"uniform"``: 1 / (number of silos holding u)), so removing one user
   leaves every other user's weighted term unchanged: the L2 sensitivity of the sum is C.

Before either step, :func:`bound_contributions` may cap each user's records within a silo and
across silos (max records per user per silo, per user overall), and each round takes part
through user-level sampling (a public coin per user) or example-level sampling (a coin per
record, then the per-user bound of step 1–2; :func:`example_level_participation` gives the
user-level rate this amounts to).

A *pair* is one (silo, user) with at least one record; pairs are the rows every kernel works on.

References
----------
Kato, Takahashi, Takagi, Cao, Liew, Yoshikawa. "Uldp-FL: Federated Learning with Across-Silo
User-Level Differential Privacy." PVLDB 17(11), 2024 (Algorithm ULDP-AVG, Sec. 4; the weights
of ULDP-AVG-w, Sec. 4.3).
Chua, Ghazi, Kamath, Kumar, Manurangsi, Sinha, Zhang. "Mind the Privacy Unit! User-Level
Differential Privacy for Language Model Fine-Tuning." COLM 2024 (example- vs user-level
sampling; bounding each user's records).
Balle, Barthe, Gaboardi. "Privacy Amplification by Subsampling: Tight Analyses via Couplings
and Divergences." NeurIPS 2018 (joint convexity, advanced joint convexity of the hockey-stick
divergence); Zhu, Dong, Wang. "Optimal Accounting of Differential Privacy via Characteristic
Function." AISTATS 2022 (dominating pairs compose).
Charles, Ganesh, McKenna, McMahan, Mitchell, Pillutla, Rush. "Fine-Tuning Large Language Models
with User-Level Differential Privacy." 2024 (user-level sampling and per-user clipping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.privacy.events import PrivacyEvent, Sampled, gaussian_for_sum
from fedguard.rng import torch_generator

WEIGHTINGS: tuple[str, ...] = ("records", "uniform")


@dataclass(frozen=True)
class UserPairs:
    """The (silo, user) pairs of a round, in silo-major order.

    ``silo`` / ``user`` / ``count``: ``(P,)`` long — the silo's position in the round's cohort,
    the user's id, and how many of the user's records that silo holds; ``positions``: for each
    pair, the record positions inside its silo's padded row, ``(P, max_count)`` long, padded
    with 0 past ``count``.
    """

    silo: Tensor
    user: Tensor
    count: Tensor
    positions: Tensor

    def __len__(self) -> int:
        return int(self.silo.shape[0])


def user_pairs(users: Tensor, counts: Tensor, silos: list[int]) -> UserPairs:
    """The pairs of ``silos`` (rows of the padded ``users`` (n_clients, width) table, −1 past
    each silo's ``counts``; a −1 inside a silo's records marks a record left out — dropped by
    :func:`bound_contributions` or not sampled this round)."""
    silo_of, user_of, count_of, rows = [], [], [], []
    for k, silo in enumerate(silos):
        ids = users[silo, : int(counts[silo])]
        for user in torch.unique(ids).tolist():
            if user < 0:  # a record dropped by contribution bounding or not sampled this round
                continue
            where = torch.nonzero(ids == user).flatten()
            silo_of.append(k)
            user_of.append(int(user))
            count_of.append(int(where.numel()))
            rows.append(where)
    width = max((len(r) for r in rows), default=1)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        positions[i, : len(r)] = r
    as_long = torch.long
    return UserPairs(
        torch.tensor(silo_of, dtype=as_long),
        torch.tensor(user_of, dtype=as_long),
        torch.tensor(count_of, dtype=as_long),
        positions,
    )


def user_weights(user: Tensor, count: Tensor, weighting: str = "records") -> Tensor:
    """``(P,)`` float64 weights w_{s,u} of the pairs, Σ over each user's pairs = 1.

    ``"records"``: n_{s,u} / n_u (ULDP-AVG-w); ``"uniform"``: 1 / |silos holding u|. Each
    user's weights depend only on that user's own counts.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS} (got {weighting!r}).")
    _, index = torch.unique(user, return_inverse=True)
    mass = count.double() if weighting == "records" else torch.ones(len(user), dtype=torch.float64)
    total = torch.zeros(int(index.max()) + 1 if len(user) else 0, dtype=torch.float64)
    total.index_add_(0, index, mass)
    return mass / total[index]


def clip_to(updates: Tensor, clip_norm: float) -> Tensor:
    """Rows of ``updates`` (P, d) scaled to L2 norm at most ``clip_norm`` (a zero row stays 0)."""
    norms = torch.linalg.vector_norm(updates, dim=1)  # (P,)
    return updates * torch.clamp(clip_norm / norms.clamp_min(1e-30), max=1.0)[:, None]


def bounded_silo_sums(
    updates: Tensor, silo: Tensor, weights: Tensor, clip_norm: float, n_silos: int
) -> Tensor:
    """``(n_silos, d)``: each silo's Σ_u w_{s,u} · clip(Δ_{s,u}, C) over its pairs.

    ``updates`` (P, d) per pair; ``weights`` (P,) with Σ over each user's pairs ≤ 1, so the sum
    over silos changes by at most C in L2 when one user is removed everywhere.
    """
    weighted = clip_to(updates, clip_norm) * weights.to(updates.device, updates.dtype)[:, None]
    out = updates.new_zeros(n_silos, updates.shape[1])
    out.index_add_(0, silo.to(out.device), weighted)
    return out


def user_contribution_norms(
    updates: Tensor, user: Tensor, weights: Tensor, clip_norm: float
) -> dict[int, float]:
    """Each user's total contribution Σ_s ‖w_{s,u} clip(Δ_{s,u})‖ across silos (the quantity
    ULDP-AVG bounds by C), for tests and diagnostics."""
    norms = torch.linalg.vector_norm(clip_to(updates, clip_norm), dim=1).double() * weights.double()
    out: dict[int, float] = {}
    for u, n in zip(user.tolist(), norms.tolist(), strict=True):
        out[int(u)] = out.get(int(u), 0.0) + float(n)
    return out


#: The stream of the round's user-level Poisson sample (one draw shared by every silo).
USER_SAMPLING_STREAM = "uldp_avg.user_sampling"


def sampled_users(n_users: int, rate: float, seed: int, round_index: int) -> Tensor:
    """``(n_users,)`` bool: each user in this round's sample independently with ``rate`` (one
    draw from the round's keyed stream, the same in every silo: a public coin)."""
    if rate >= 1.0:
        return torch.ones(n_users, dtype=torch.bool)
    gen = torch_generator(seed, round_index, -1, USER_SAMPLING_STREAM)
    return torch.rand(n_users, generator=gen, dtype=torch.float64) < rate


def user_level_event(
    noise_multiplier: float, clip_norm: float, user_sampling_rate: float
) -> PrivacyEvent:
    """One round for every user: N(0, (zC)²) on a sum whose user-level L2 sensitivity is C
    (add/remove one user in every silo), Poisson-sampled at the user level when rate < 1."""
    gaussian = gaussian_for_sum(clip_norm, noise_multiplier * clip_norm, "add_remove")
    if user_sampling_rate >= 1.0:
        return gaussian
    return Sampled(user_sampling_rate, gaussian, scheme="poisson")


#: How a round chooses what takes part: whole users (a public coin per user) or records (a coin
#: per record; a user takes part when any of its kept records is drawn).
SAMPLING_UNITS: tuple[str, ...] = ("user", "example")
#: The stream of each user's random order of records for contribution bounding (once per run).
CONTRIBUTION_STREAM = "uldp_avg.contribution_bounding"
#: The stream of a silo's record-level Poisson sample in a round.
EXAMPLE_SAMPLING_STREAM = "uldp_avg.example_sampling"


def bound_contributions(
    users: Tensor,
    counts: Tensor,
    max_per_silo: int | None,
    max_per_user: int | None,
    seed: int,
) -> Tensor:
    """The ``users`` table (n_silos, width) with every record past the caps set to −1.

    Each user's records are visited in a random order keyed by (``seed``, user) — a draw that
    depends on that user's own records only, so bounding one user never changes which records
    of another are kept — and a record is kept while its silo holds fewer than
    ``max_per_silo`` of the user's kept records and the user fewer than ``max_per_user`` in all
    silos (``None``: no cap). The result is maximal: a user keeps
    min(Σ_s min(n_{s,u}, max_per_silo), max_per_user) records.
    """
    out = users.clone()
    if max_per_silo is None and max_per_user is None:
        return out
    where: dict[int, list[tuple[int, int]]] = {}
    for s in range(users.shape[0]):
        for p, u in enumerate(users[s, : int(counts[s])].tolist()):
            if u >= 0:
                where.setdefault(int(u), []).append((s, p))
    dropped: list[tuple[int, int]] = []
    for u, records in where.items():
        gen = torch_generator(seed, -1, u, CONTRIBUTION_STREAM)
        keys = torch.rand(len(records), generator=gen, dtype=torch.float64).tolist()
        in_silo: dict[int, int] = {}
        kept = 0
        for i in sorted(range(len(records)), key=keys.__getitem__):
            s, p = records[i]
            silo_full = max_per_silo is not None and in_silo.get(s, 0) >= max_per_silo
            user_full = max_per_user is not None and kept >= max_per_user
            if silo_full or user_full:
                dropped.append((s, p))
                continue
            in_silo[s] = in_silo.get(s, 0) + 1
            kept += 1
    if dropped:
        rows, cols = zip(*dropped, strict=True)
        out[torch.tensor(rows), torch.tensor(cols)] = -1
    return out


def sample_users_in(
    table: Tensor, rate: float, seed: int, round_index: int, n_users: int
) -> Tensor:
    """``table`` with the records of users outside this round's user-level sample set to −1."""
    chosen = sampled_users(n_users, rate, seed, round_index)
    return table.where((table >= 0) & chosen[table.clamp_min(0)], -1)


def sample_examples_in(table: Tensor, rate: float, seed: int, round_index: int) -> Tensor:
    """``table`` with each record independently kept with probability ``rate`` (record-level
    Poisson sampling; silo s draws from its own keyed stream), the others set to −1."""
    if rate >= 1.0:
        return table.clone()
    draws = torch.stack(
        [
            torch.rand(
                table.shape[1],
                generator=torch_generator(seed, round_index, s, EXAMPLE_SAMPLING_STREAM),
                dtype=torch.float64,
            )
            for s in range(table.shape[0])
        ]
    )  # (n_silos, width)
    return table.where(draws < rate, -1)


def example_level_participation(rate: float, max_records: int) -> float:
    """1 − (1 − q)^k: the largest probability that a user with at most k kept records has at
    least one of them in a record-level Poisson sample of rate q.

    Why it is the user-level sampling rate: a user's contribution to the sum is 0 when none of
    its records is drawn and some vector of norm ≤ C otherwise (per-user clipping after the
    draw, weights summing to ≤ 1 across silos). Writing the output with the user as the mixture
    over the drawn subsets S ≠ ∅ of (1 − q_u)·N(0, σ²) + q_u·N(v_S, σ²), joint convexity of the
    hockey-stick divergence (both directions) bounds it by the Poisson-sampled Gaussian of rate
    q_u = 1 − (1 − q)^{n_u} and sensitivity C, which grows with q_u; n_u ≤ k. The bound is
    attained by a user whose every non-empty subset of records yields the same clipped update.
    """
    if rate >= 1.0:
        return 1.0
    return float(-math.expm1(max_records * math.log1p(-rate)))


__all__ = [
    "CONTRIBUTION_STREAM",
    "EXAMPLE_SAMPLING_STREAM",
    "SAMPLING_UNITS",
    "USER_SAMPLING_STREAM",
    "WEIGHTINGS",
    "UserPairs",
    "bound_contributions",
    "bounded_silo_sums",
    "clip_to",
    "example_level_participation",
    "sample_examples_in",
    "sample_users_in",
    "sampled_users",
    "user_contribution_norms",
    "user_level_event",
    "user_pairs",
    "user_weights",
]
