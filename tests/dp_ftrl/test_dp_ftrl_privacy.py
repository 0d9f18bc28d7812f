"""Sensitivity and privacy events of DP-FTRL: closed forms, dp-accounting's tree-aggregation
RDP (stored fixture, see fixtures/make_dp_accounting_tree.py), exact prefix composition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from defenses.dp_ftrl.accounting import round_events
from defenses.dp_ftrl.banded_factorization import bandmf_strategy
from defenses.dp_ftrl.sensitivity import (
    cyclic_patterns,
    max_participations,
    prefix_sensitivity_squared,
    sensitivity_squared,
)
from defenses.dp_ftrl.tree_factorization import tree_factorization
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.accountants.rdp import RdpAccountant
from fedguard.privacy.events import (
    Composed,
    PrivacyEvent,
    Sampled,
    clipped_sum_gaussian,
    effective_gaussian_multiplier,
    event_from_dict,
)
from fedguard.privacy.matrix_events import MatrixGaussian

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "dp_accounting_tree.json").read_text())


def run_event(events: list[PrivacyEvent | None]) -> PrivacyEvent:
    return Composed(tuple(e for e in events if e is not None))


def tree_events(rounds: int, restart: int, separation: int, z: float) -> list:
    f = tree_factorization(rounds, restart, "plain")
    return round_events(
        f.strategy,
        f.release_round,
        name="tree_plain",
        bands=restart,
        noise_multiplier=z,
        clip_norm=1.0,
        min_separation=separation,
    )


@pytest.mark.parametrize(("restart", "trees"), [(1, 3), (4, 1), (7, 3), (8, 2), (16, 4)])
def test_tree_sensitivity_is_its_closed_form(restart: int, trees: int) -> None:
    # one participation per tree (min separation = restart period), k trees: s² = k ⌈log₂(R+1)⌉
    rounds = restart * trees
    f = tree_factorization(rounds, restart, "plain")
    s2 = sensitivity_squared(f.strategy, cyclic_patterns(rounds, restart))
    assert s2 == trees * math.ceil(math.log2(restart + 1))


def test_tree_sensitivity_with_one_participation_across_uneven_trees() -> None:
    # min separation ≥ T: a single participation; the deepest tree decides
    f = tree_factorization(13, 5, "plain")
    assert sensitivity_squared(f.strategy, cyclic_patterns(13, 13)) == math.ceil(math.log2(6))


@pytest.mark.parametrize(
    "case", FIXTURE["cases"], ids=lambda c: f"{c['steps']}x{c['compositions']}"
)
def test_tree_accounting_matches_dp_accounting(case: dict) -> None:
    z, steps, k = case["noise_multiplier"], case["steps"], case["compositions"]
    restart = max(steps)
    if k > 1:  # a client in each of k trees of R rounds once: min separation R
        rounds, separation = restart * k, restart
    else:  # one participation across all trees
        rounds, separation = sum(steps), sum(steps)
    event = run_event(tree_events(rounds, restart, separation, z))
    ours = RdpAccountant(orders=tuple(case["orders"])).rdp(event)
    np.testing.assert_allclose(ours, case["rdp"], rtol=1e-12)
    # the RDP conversion (the default rdp accountant answers unsampled Gaussians exactly)
    eps = RdpAccountant(unsampled_closed_form=False).epsilon(event, case["delta"])
    reference = case["epsilon_rdp_default_orders"]
    assert eps == pytest.approx(reference, rel=0.02)  # different order grids and conversions
    # the exact Gaussian ε is never above an RDP bound
    exact = get_accountant("analytic").epsilon(event, case["delta"])
    assert exact <= min(eps, reference)
    assert get_accountant("rdp").epsilon(event, case["delta"]) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("rounds", "bands", "separation"), [(20, 4, 4), (21, 3, 5), (12, 1, 3)])
def test_bandmf_sensitivity_is_the_largest_column_norm_sum_of_a_pattern(
    rounds: int, bands: int, separation: int
) -> None:
    c = bandmf_strategy(rounds, bands)
    patterns = cyclic_patterns(rounds, separation)
    column_sq = np.sum(c**2, axis=0)
    expected = max(column_sq[p].sum() for p in patterns)
    assert sensitivity_squared(c, patterns) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(max_participations(rounds, separation), rel=1e-12)


def test_more_bands_than_the_separation_correlate_participations() -> None:
    c = bandmf_strategy(20, 6)
    assert sensitivity_squared(c, cyclic_patterns(20, 3)) > max_participations(20, 3) + 0.1


def test_sensitivity_bounds_every_contribution_and_is_attained() -> None:
    rng = np.random.default_rng(1)
    c = np.tril(rng.normal(size=(8, 8)))  # mixed signs: the bound is Σ|G_ij|
    c_pos = np.abs(c)  # non-negative: the bound is attained with equal contributions
    patterns = cyclic_patterns(8, 3)
    for matrix in (c, c_pos):
        bound = sensitivity_squared(matrix, patterns)
        for _ in range(200):
            p = patterns[rng.integers(len(patterns))]
            u = rng.normal(size=(len(p), 5))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            assert np.sum((matrix[:, p] @ u) ** 2) <= bound + 1e-9
    attained = max(np.sum(c_pos[:, p].sum(axis=1) ** 2) for p in patterns)
    assert attained == pytest.approx(sensitivity_squared(c_pos, patterns))


@pytest.mark.parametrize("strategy", ["tree", "bandmf", "bandmf_wide"])
def test_first_t_events_compose_to_the_prefix_gaussian(strategy: str) -> None:
    rounds, separation, z = 24, 4, 1.7
    if strategy == "tree":
        f = tree_factorization(rounds, 8, "honaker")
        c, release = f.strategy, f.release_round
    else:
        c = bandmf_strategy(rounds, 4 if strategy == "bandmf" else 7)
        release = np.arange(rounds)
    patterns = cyclic_patterns(rounds, separation)
    events = round_events(
        c, release, name="bandmf", bands=4, noise_multiplier=z, clip_norm=0.5,
        min_separation=separation,
    )  # fmt: skip
    prefix = prefix_sensitivity_squared(c, release, patterns)
    assert np.all(np.diff(prefix) >= -1e-12)
    assert prefix[-1] == pytest.approx(sensitivity_squared(c, patterns), rel=1e-12)
    for t in range(rounds):
        released = [e for e in events[: t + 1] if e is not None]
        z_eff = effective_gaussian_multiplier(Composed(tuple(released)))
        assert z_eff == pytest.approx(z / math.sqrt(prefix[t]), rel=1e-9)
    for event in events:
        if event is not None:
            assert isinstance(event, MatrixGaussian)
            assert event.noise_stddev == pytest.approx(z * 0.5)  # σ per entry
            assert event_from_dict(event.to_dict()) == event  # the ledger's JSON round trip


def test_one_band_without_amplification_is_dp_fedavg_over_the_participations() -> None:
    rounds, separation, z = 20, 4, 1.3
    events = round_events(
        bandmf_strategy(rounds, 1), np.arange(rounds), name="bandmf", bands=1,
        noise_multiplier=z, clip_norm=1.0, min_separation=separation,
    )  # fmt: skip
    # group 0 takes part in rounds 0, 4, 8, …: one Gaussian(z) each, nothing in between
    assert [t for t, e in enumerate(events) if e is not None] == [0, 4, 8, 12, 16]
    ours = run_event(events)
    k = max_participations(rounds, separation)
    fedavg = clipped_sum_gaussian(1.0, z, steps=k)  # DP-FedAvg, unsampled, k participations
    for name in ("rdp", "pld", "analytic"):
        accountant = get_accountant(name)
        assert accountant.epsilon(ours, 1e-5) == pytest.approx(
            accountant.epsilon(fedavg, 1e-5), rel=1e-9
        )


@pytest.mark.parametrize("separation", [1, 5])
def test_amplified_one_band_is_poisson_dp_fedavg(separation: int) -> None:
    rounds, z, q = 4 * separation, 1.1, 0.3  # (PLD of many sampled steps is slow)
    events = round_events(
        bandmf_strategy(rounds, 1), np.arange(rounds), name="bandmf", bands=1,
        noise_multiplier=z, clip_norm=1.0, min_separation=separation, sampling_rate=q,
    )  # fmt: skip
    present = [e for e in events if e is not None]
    assert len(present) == max_participations(rounds, separation)
    assert all(isinstance(e, Sampled) and e.scheme == "poisson" for e in present)
    fedavg = clipped_sum_gaussian(q, z, steps=len(present), scheme="poisson")
    for name in ("rdp", "pld"):
        accountant = get_accountant(name)
        assert accountant.epsilon(run_event(events), 1e-5) == pytest.approx(
            accountant.epsilon(fedavg, 1e-5), rel=1e-9
        )


def test_amplified_bandmf_charges_one_dp_sgd_step_per_participation() -> None:
    rounds, separation, z, q = 24, 4, 0.9, 0.25
    events = round_events(
        bandmf_strategy(rounds, 4), np.arange(rounds), name="bandmf", bands=4,
        noise_multiplier=z, clip_norm=1.0, min_separation=separation, sampling_rate=q,
    )  # fmt: skip
    present = [e for e in events if e is not None]
    assert len(present) == 6
    for e in present:
        assert isinstance(e, Sampled) and e.rate == q
        assert e.event.noise_multiplier == pytest.approx(z)  # unit column norms
