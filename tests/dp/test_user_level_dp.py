"""User-level DP across silos (ULDP-AVG, issue 22 item 2): contribution bounding, ε per user,
noise, data with user ids, refusals."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedguard.config import parse_spec
from fedguard.core.simulation import Simulation
from fedguard.core.user_level import (
    bounded_silo_sums,
    sampled_users,
    user_contribution_norms,
    user_pairs,
    user_weights,
)
from fedguard.defenses.user_level_dp.uldp_avg import ULDPAvg
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.launch import build_simulation
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.accountants.analytic import gaussian_epsilon
from fedguard.privacy.budget import headline_level, ledger_report, run_ledgers
from fedguard.privacy.events import sampled_gaussian

DELTA = 1e-5


def _population(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded (n_silos, width) user table (−1 padding) and counts from a list of id lists."""
    counts = torch.tensor([len(ids) for ids in data], dtype=torch.long)
    users = torch.full((len(data), max(1, int(counts.max()))), -1, dtype=torch.long)
    for s, ids in enumerate(data):
        users[s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return users, counts


silos_strategy = st.lists(
    st.lists(st.integers(0, 7), min_size=1, max_size=12), min_size=1, max_size=6
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    silos=silos_strategy,
    scale=st.floats(0.01, 100.0),
    clip=st.floats(0.1, 5.0),
    weighting=st.sampled_from(["records", "uniform"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_no_user_exceeds_the_bound_across_silos(
    silos: list[list[int]], scale: float, clip: float, weighting: str, seed: int
) -> None:
    """Whatever the layout of users over silos and the size of their updates, one user's total
    contribution to the sum over silos is at most C, and removing the user everywhere moves the
    released sum by at most C (the user-level L2 sensitivity the event claims)."""
    users, counts = _population(silos)
    pairs = user_pairs(users, counts, list(range(len(silos))))
    gen = torch.Generator().manual_seed(seed)
    updates = scale * torch.randn(len(pairs), 6, generator=gen, dtype=torch.float64)
    weights = user_weights(pairs.user, pairs.count, weighting)
    for total in user_contribution_norms(updates, pairs.user, weights, clip).values():
        assert total <= clip * (1 + 1e-9)
    full = bounded_silo_sums(updates, pairs.silo, weights, clip, len(silos)).sum(0)
    for user in pairs.user.unique().tolist():
        rest = pairs.user != user
        without = bounded_silo_sums(
            updates[rest], pairs.silo[rest], weights[rest], clip, len(silos)
        ).sum(0)
        assert float(torch.linalg.vector_norm(full - without)) <= clip * (1 + 1e-9)


def test_the_bound_needs_the_cross_silo_weights() -> None:
    """The property above can fail: without the weights (w = 1 per pair, each silo bounding its
    own users only) a user in 3 silos moves the sum by 3C."""
    users, counts = _population([[0, 0, 1], [0, 2], [0]])
    pairs = user_pairs(users, counts, [0, 1, 2])
    updates = torch.ones(len(pairs), 4, dtype=torch.float64)
    unweighted = torch.ones(len(pairs), dtype=torch.float64)
    norms = user_contribution_norms(updates, pairs.user, unweighted, 1.0)
    assert norms[0] == pytest.approx(3.0)
    weighted = user_contribution_norms(
        updates, pairs.user, user_weights(pairs.user, pairs.count), 1.0
    )
    assert weighted[0] == pytest.approx(1.0)


def test_pairs_and_weights_match_a_loop() -> None:
    users, counts = _population([[3, 1, 3, 3], [1, 2], [3]])
    pairs = user_pairs(users, counts, [0, 1, 2])
    got = {
        (int(s), int(u)): (int(c), float(w))
        for s, u, c, w in zip(
            pairs.silo, pairs.user, pairs.count, user_weights(pairs.user, pairs.count), strict=True
        )
    }
    # user 3: 3 records in silo 0, 1 in silo 2 (n_u = 4); user 1: one each in silos 0 and 1
    assert got == {
        (0, 1): (1, 0.5),
        (0, 3): (3, 0.75),
        (1, 1): (1, 0.5),
        (1, 2): (1, 1.0),
        (2, 3): (1, 0.25),
    }
    uniform = user_weights(pairs.user, pairs.count, "uniform")
    assert uniform.tolist() == [0.5, 0.5, 0.5, 1.0, 0.5]
    # the positions point at the user's records in its silo
    first = pairs.positions[1, : int(pairs.count[1])].tolist()
    assert first == [0, 2, 3]


def _spec(**defense: Any) -> Any:
    transform = {"name": "uldp_avg", "noise_multiplier": 1.5, "clip_norm": 0.5, **defense}
    return parse_spec(
        {
            "name": "uldp",
            "rounds": 3,
            "seed": 0,
            "data": {"dataset": {"name": "digits_users", "n_users": 40}, "partition": "iid"},
            "model": {"name": "mlp", "hidden": [8]},
            "clients": {"n_clients": 4, "weighting": "uniform", "sampling": "all"},
            "training": {"batch_size": 16, "learning_rate": 0.1},
            "defense": {"client_transforms": [transform]},
            "privacy": {"delta": DELTA},
        }
    )


def _run(spec: Any) -> tuple[Simulation, dict[str, Any]]:
    sim = build_simulation(spec)
    state = sim.initial_state()
    ledger: dict[str, Any] = {"sampling": sim.sampling, "delta": DELTA, "rounds": []}
    for _ in range(spec.rounds):
        state, out = sim.run_round(state)
        ledger["rounds"].append({"round": state.round, **out.events.to_dict()})
        assert torch.isfinite(state.params).all()
    return sim, ledger


def test_epsilon_per_user_is_the_gaussian_closed_form() -> None:
    """Every user, every round: N(0, (zC)²) on a sum of user-level sensitivity C — T rounds are
    one Gaussian of μ = √T / z (exact), filed at the privacy level "user"."""
    _, ledger = _run(_spec())
    ledgers = run_ledgers(ledger)
    assert set(ledgers) == {"user"}
    assert ledgers["user"].unit.description == "one user's records in every silo, added or removed"
    exact = gaussian_epsilon(math.sqrt(3) / 1.5, DELTA)
    report = ledger_report(ledger, DELTA)
    assert report["epsilon"] == pytest.approx(exact, rel=1e-9)
    for name in ("rdp", "pld", "prv"):
        entry = report["levels"]["user"]["accountants"][name]
        assert entry["epsilon"] == pytest.approx(exact, rel=1e-9), name


def test_user_sampling_is_accounted_as_poisson_at_the_user_level() -> None:
    _, ledger = _run(_spec(user_sampling_rate=0.25))
    expected = sampled_gaussian(0.25, 1.5, 3)
    for name in ("rdp", "pld"):
        got = run_ledgers(ledger)["user"].epsilon(get_accountant(name), DELTA).epsilon
        assert got == pytest.approx(get_accountant(name).epsilon(expected, DELTA), rel=1e-9)
    # one public draw per round, the same for every silo; about q of the users
    draws = torch.stack([sampled_users(40, 0.25, 0, t) for t in range(200)])
    assert draws.double().mean().item() == pytest.approx(0.25, abs=0.02)
    assert torch.equal(sampled_users(40, 0.25, 0, 7), sampled_users(40, 0.25, 0, 7))


def _train_once(sim: Simulation) -> Any:
    from fedguard.api import TransformContext
    from fedguard.types import RoundContext

    state = sim.initial_state()
    ids = tuple(range(4))
    rctx = RoundContext(0, 0, state.params, ids, 4)
    return sim.components.client_transforms[0].train(
        sim.model, state.params, sim.clients, sim.local, TransformContext(rctx, ids, {}, {})
    )


def test_untrusted_silos_reduce_the_accounted_noise() -> None:
    """Up to f = n_byzantine silos may skip their noise share: only (S − f)/S of the variance
    is accounted, z·√((S − f)/S)."""
    sim = build_simulation(_spec())
    object.__setattr__(sim.components.client_transforms[0], "_n_untrusted", 1)
    (event,) = _train_once(sim).events
    assert event.level == "user"
    assert event.event.noise_multiplier == pytest.approx(1.5 * math.sqrt(3 / 4))
    assert event.event.sensitivity == 0.5


def test_the_noise_on_the_sum_has_the_claimed_variance() -> None:
    """With local training all but switched off (learning rate 1e-12, updates ~1e-12) the rows are the noise
    shares, scaled by S/(qU): their sum over silos is N(0, (zC)²) per coordinate."""
    sim = build_simulation(_spec().with_overrides(**{"training.learning_rate": 1e-12}))
    out = _train_once(sim)
    noise_sum = out.values.double().sum(0) / (4 / 40)  # (d,)
    d = noise_sum.numel()
    variance = float(noise_sum.var())
    expected = (1.5 * 0.5) ** 2
    # sample variance of d normals: relative std √(2/d)
    assert abs(variance / expected - 1) < 5 * math.sqrt(2 / d)
    assert out.state["user_silo_pairs"] > 40  # users are spread over several silos


def test_digits_users_spreads_users_over_silos() -> None:
    sim = build_simulation(_spec())
    data = sim.data
    users = sim.clients.users
    assert users is not None
    for silo in range(4):
        n = int(sim.clients.counts[silo])
        assert torch.equal(
            users[silo, :n], data.train.groups[torch.as_tensor(data.partition[silo])]
        )
        assert (users[silo, n:] == -1).all()
    silos_per_user = [
        sum(bool((users[s] == u).any()) for s in range(4)) for u in range(int(users.max()) + 1)
    ]
    assert sum(k >= 2 for k in silos_per_user) >= 30


def test_refusals_name_the_field() -> None:
    with pytest.raises(ConfigError, match="user_sampling_rate"):
        ULDPAvg(user_sampling_rate=0.0)
    with pytest.raises(ConfigError, match="weighting"):
        ULDPAvg(weighting="median")
    poisson = _spec().with_overrides(
        **{"clients.sampling": "poisson", "clients.sampling_rate": 0.5}
    )
    with pytest.raises(IncompatibleError, match="clients.sampling 'all'"):
        build_simulation(poisson)
    no_users = _spec().with_overrides(**{"data.dataset": "digits"})
    sim = build_simulation(no_users)
    with pytest.raises(IncompatibleError, match="user id"):
        sim.run_round(sim.initial_state())


def test_headline_prefers_client_then_user_then_record() -> None:
    assert headline_level(["record", "user"]) == "user"
    assert headline_level(["record", "user", "client"]) == "client"
    assert headline_level(["record"]) == "record"
