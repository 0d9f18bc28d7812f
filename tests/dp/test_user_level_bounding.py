"""Contribution caps within and across silos, and example-level sampling with its user-level
accounting (ULDP-AVG, issue 22 item 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from fedguard.config import parse_spec
from fedguard.core.user_level import (
    bound_contributions,
    example_level_participation,
    sample_examples_in,
    user_level_event,
)
from fedguard.defenses.user_level_dp.uldp_avg import ULDPAvg
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.events import sampled_gaussian
from fedguard.types import RoundContext

DELTA = 1e-5


def _table(silos: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded (n_silos, width) user table (−1 padding) and counts from a list of id lists."""
    counts = torch.tensor([len(ids) for ids in silos], dtype=torch.long)
    users = torch.full((len(silos), max(1, int(counts.max()))), -1, dtype=torch.long)
    for s, ids in enumerate(silos):
        users[s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return users, counts


def _held(table: torch.Tensor, counts: torch.Tensor) -> dict[int, list[int]]:
    """user -> records held in each silo (a list over silos)."""
    out: dict[int, list[int]] = {}
    for s in range(table.shape[0]):
        for u in table[s, : int(counts[s])].tolist():
            if u >= 0:
                out.setdefault(u, [0] * table.shape[0])[s] += 1
    return out


layouts = st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=15), min_size=1, max_size=5)
caps = st.sampled_from([None, 1, 2, 3, 4, 5])  # uniform: one_of would draw None most often


@settings(max_examples=150, deadline=None, derandomize=True)
@given(silos=layouts, per_silo=caps, per_user=caps, seed=st.integers(0, 2**31 - 1))
def test_no_user_exceeds_either_cap(
    silos: list[list[int]], per_silo: int | None, per_user: int | None, seed: int
) -> None:
    """Whatever the layout: no user keeps more than ``per_silo`` records in a silo nor more than
    ``per_user`` in all silos; kept records are the user's own, in place; bounding is maximal
    (min(Σ_s min(n_su, per_silo), per_user) kept); and a user's kept records do not depend on
    anyone else's (removing another user everywhere changes nothing for it)."""
    users, counts = _table(silos)
    kept = bound_contributions(users, counts, per_silo, per_user, seed)
    assert bool(((kept == users) | (kept == -1)).all())
    before, after = _held(users, counts), _held(kept, counts)
    for u, held in before.items():
        got = after.get(u, [0] * len(silos))
        if per_silo is not None:
            assert max(got) <= per_silo
        if per_user is not None:
            assert sum(got) <= per_user
        capped = sum(n if per_silo is None else min(n, per_silo) for n in held)
        assert sum(got) == (capped if per_user is None else min(capped, per_user))
    for removed in before:
        without = users.where(users != removed, -1)
        kept_without = bound_contributions(without, counts, per_silo, per_user, seed)
        others = (users != removed) & (users >= 0)
        assert torch.equal(kept_without[others], kept[others])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    silos=layouts,
    per_silo=st.integers(1, 4),
    per_user=st.integers(1, 5),
    sampling=st.sampled_from(["user", "example"]),
    round_index=st.integers(0, 50),
)
def test_round_pairs_respect_both_caps(
    silos: list[list[int]], per_silo: int, per_user: int, sampling: str, round_index: int
) -> None:
    """The pairs the defense trains on, every round, under either sampling: a pair never holds
    more than the per-silo cap, a user's pairs never more than the cross-silo cap, and the
    cross-silo weights of a user sum to at most 1."""
    users, counts = _table(silos)
    rate = {"user_sampling_rate": 0.5} if sampling == "user" else {"example_sampling_rate": 0.5}
    uldp = ULDPAvg(
        sampling=sampling,
        max_records_per_user=per_user,
        max_records_per_user_per_silo=per_silo,
        **rate,  # type: ignore[arg-type]
    )
    pairs, weights = uldp.round_pairs(users, counts, list(range(len(silos))), 3, round_index)
    assert bool((pairs.count <= per_silo).all())
    for u in pairs.user.unique().tolist():
        mine = pairs.user == u
        assert int(pairs.count[mine].sum()) <= per_user
        assert float(weights[mine].sum()) <= 1 + 1e-12
    assert bool((pairs.count >= 1).all())


def test_without_caps_a_user_keeps_every_record() -> None:
    """The caps are what bounds records: uncapped, user 0 keeps its 5 records in silo 0."""
    users, counts = _table([[0, 0, 0, 0, 0, 1], [0, 1]])
    assert torch.equal(bound_contributions(users, counts, None, None, 0), users)
    kept = bound_contributions(users, counts, 2, 3, 0)
    assert _held(kept, counts) == {0: [2, 1], 1: [1, 1]}


def test_example_sampling_draws_each_record_with_its_rate() -> None:
    users = torch.arange(400).reshape(4, 100)
    drawn = torch.stack([sample_examples_in(users, 0.2, 0, t) >= 0 for t in range(50)])
    assert drawn.double().mean().item() == pytest.approx(0.2, abs=0.01)
    assert not torch.equal(drawn[0], drawn[1])  # a new draw every round


# --------------------------------------------------------------------------------------------
# Accounting of example-level sampling at the user level


def test_participation_rate_closed_form() -> None:
    assert example_level_participation(0.2, 1) == pytest.approx(0.2, rel=1e-15)
    assert example_level_participation(0.2, 3) == pytest.approx(1 - 0.8**3, rel=1e-15)
    assert example_level_participation(1.0, 7) == 1.0
    assert example_level_participation(1e-9, 4) == pytest.approx(4e-9, rel=1e-8)


def test_the_ledger_records_the_user_level_rate_of_example_sampling() -> None:
    """Example-level sampling at q with k records per user is filed as the Poisson-sampled
    Gaussian at 1 − (1 − q)^k; its ε per user equals that closed form (RDP and PLD)."""
    uldp = ULDPAvg(
        noise_multiplier=1.2,
        clip_norm=0.5,
        sampling="example",
        example_sampling_rate=0.1,
        max_records_per_user=4,
    )
    r = RoundContext(0, 0, torch.zeros(3), (0, 1), 2)
    out = uldp.release(
        torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0), [0, 1], 2, 10, r
    )
    (event,) = out.events
    assert event.level == "user"
    q_user = 1 - 0.9**4
    assert event.event.rate == pytest.approx(q_user, rel=1e-12)
    assert event.event == user_level_event(1.2, 0.5, example_level_participation(0.1, 4))
    for name in ("rdp", "pld"):
        accountant = get_accountant(name)
        expected = accountant.epsilon(sampled_gaussian(q_user, 1.2, 1), DELTA)
        assert accountant.epsilon(event.event, DELTA) == pytest.approx(expected, rel=1e-9)


def _hockey_stick(p: np.ndarray, q: np.ndarray, gamma: float, dx: float) -> float:
    """H_γ(P ‖ Q) = ∫ max(p − γ q, 0) of two densities on a grid."""
    return float(np.clip(p - gamma * q, 0, None).sum() * dx)


def _user_mixture(
    values: list[float], rate: float, clip: float, grid: np.ndarray, sigma: float
) -> np.ndarray:
    """Density of the 1-D release with the user present: its drawn records' values summed and
    clipped to [−C, C] (per-user clipping after example sampling), plus N(0, σ²)."""
    k = len(values)
    density = np.zeros_like(grid)
    for mask in range(2**k):
        drawn = [values[i] for i in range(k) if mask >> i & 1]
        p = rate ** len(drawn) * (1 - rate) ** (k - len(drawn))
        shift = float(np.clip(sum(drawn), -clip, clip))
        density += p * norm.pdf(grid, shift, sigma)
    return density


@pytest.mark.parametrize("epsilon", [0.5, 1.5, 3.0])
def test_example_level_accounting_dominates_the_exact_mixture(epsilon: float) -> None:
    """One round in one dimension, computed exactly: a user with k = 3 records, each drawn with
    q = 0.2, clipped per user to C = 1, noise σ = 1. For every tried layout of the user's record
    values and both neighbouring directions, the hockey-stick divergence at e^ε is at most that
    of the Poisson-sampled Gaussian at the recorded rate 1 − (1 − q)^k; the worst layout (every
    non-empty draw clips to +C) attains it, and so exceeds what rate q alone would claim."""
    q, k, clip, sigma = 0.2, 3, 1.0, 1.0
    grid = np.linspace(-14.0, 16.0, 60_001)
    dx = float(grid[1] - grid[0])
    gamma = math.exp(epsilon)
    absent = norm.pdf(grid, 0.0, sigma)

    def sampled_gaussian_pair(rate: float) -> tuple[float, float]:
        present = (1 - rate) * absent + rate * norm.pdf(grid, clip, sigma)
        return _hockey_stick(present, absent, gamma, dx), _hockey_stick(absent, present, gamma, dx)

    rate_recorded = ULDPAvg(
        sampling="example", example_sampling_rate=q, max_records_per_user=k
    ).participation_rate
    bound = sampled_gaussian_pair(rate_recorded)
    gen = np.random.default_rng(0)
    layouts = [[5.0, 5.0, 5.0], [1.0, 1.0, 1.0], [0.3, -0.2, 0.9], [2.0, -2.0, 0.5]]
    layouts += [list(gen.normal(0, 1.5, size=k)) for _ in range(6)]
    for values in layouts:
        present = _user_mixture(values, q, clip, grid, sigma)
        add = _hockey_stick(present, absent, gamma, dx)
        remove = _hockey_stick(absent, present, gamma, dx)
        assert add <= bound[0] * (1 + 1e-9) + 1e-15, values
        assert remove <= bound[1] * (1 + 1e-9) + 1e-15, values
    worst = _user_mixture([5.0, 5.0, 5.0], q, clip, grid, sigma)
    assert _hockey_stick(worst, absent, gamma, dx) == pytest.approx(bound[0], rel=1e-9)
    assert _hockey_stick(worst, absent, gamma, dx) > sampled_gaussian_pair(q)[0] * 1.5


# --------------------------------------------------------------------------------------------
# In the round loop


def _spec(**transform: Any) -> Any:
    return parse_spec(
        {
            "name": "uldp_els",
            "rounds": 2,
            "seed": 0,
            "data": {"dataset": {"name": "digits_users", "n_users": 40}, "partition": "iid"},
            "model": {"name": "mlp", "hidden": [8]},
            "clients": {"n_clients": 4, "weighting": "uniform", "sampling": "all"},
            "training": {"batch_size": 16, "learning_rate": 0.1},
            "defense": {
                "client_transforms": [
                    {"name": "uldp_avg", "noise_multiplier": 1.5, "clip_norm": 0.5, **transform}
                ]
            },
            "privacy": {"delta": DELTA},
        }
    )


def test_example_sampling_runs_and_files_the_user_level_rate() -> None:
    sim = build_simulation(
        _spec(
            sampling="example",
            example_sampling_rate=0.3,
            max_records_per_user=6,
            max_records_per_user_per_silo=2,
        )
    )
    state = sim.initial_state()
    users = sim.clients.users
    assert users is not None
    state, out = sim.run_round(state)
    assert torch.isfinite(state.params).all()
    (event,) = out.events.population
    assert event.level == "user"
    assert event.event.rate == pytest.approx(1 - 0.7**6, rel=1e-12)
    assert event.event == user_level_event(1.5, 0.5, example_level_participation(0.3, 6))


def test_refusals_name_the_field() -> None:
    with pytest.raises(ConfigError, match="max_records_per_user is required"):
        ULDPAvg(sampling="example", example_sampling_rate=0.5)
    with pytest.raises(ConfigError, match="example_sampling_rate applies to sampling 'example'"):
        ULDPAvg(example_sampling_rate=0.5)
    with pytest.raises(ConfigError, match="user_sampling_rate applies to sampling 'user'"):
        ULDPAvg(sampling="example", user_sampling_rate=0.5, max_records_per_user=3)
    with pytest.raises(ConfigError, match="sampling must be one of"):
        ULDPAvg(sampling="records")
    with pytest.raises(ConfigError, match="max_records_per_user_per_silo must be an integer"):
        ULDPAvg(max_records_per_user_per_silo=0)
    with pytest.raises(ConfigError, match="example_sampling_rate must be a number"):
        ULDPAvg(sampling="example", example_sampling_rate=0.0, max_records_per_user=3)
