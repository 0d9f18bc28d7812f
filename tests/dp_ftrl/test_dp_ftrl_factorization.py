"""Factorization invariants of DP-FTRL's strategies: A = B·C exactly, causal decoders, banded
column-normalised BandMF that beats independent noise, Honaker's variances in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from defenses.dp_ftrl.banded_factorization import (
    _objective,
    band_mask,
    bandmf_strategy,
    max_squared_error,
    sqrt_toeplitz_start,
    total_squared_error,
)
from defenses.dp_ftrl.tree_factorization import prefix_workload, tree_factorization

TREE_CASES = [(1, 1), (7, 7), (8, 8), (10, 4), (13, 5), (16, 16), (20, 3)]


@pytest.mark.parametrize("estimator", ["plain", "honaker"])
@pytest.mark.parametrize(("rounds", "restart"), TREE_CASES)
def test_tree_decoder_times_strategy_is_the_prefix_workload(
    estimator: str, rounds: int, restart: int
) -> None:
    f = tree_factorization(rounds, restart, estimator)
    np.testing.assert_allclose(f.decoder @ f.strategy, prefix_workload(rounds), atol=1e-12)
    # causal: prefix t uses only nodes released by round t
    for t in range(rounds):
        assert np.all(f.release_round[np.flatnonzero(f.decoder[t])] <= t)
    # a node is released in the last round it covers
    last_round = np.array([np.flatnonzero(row).max() for row in f.strategy])
    np.testing.assert_array_equal(f.release_round, last_round)


def test_plain_tree_prefix_uses_the_binary_decomposition() -> None:
    f = tree_factorization(8, 8, "plain")
    # prefix of 7 rounds = [0,4) + [4,6) + [6,7): three nodes, each with weight one
    row = f.decoder[6]
    assert sorted(row[row != 0].tolist()) == [1.0, 1.0, 1.0]
    # prefix of 8 rounds = the root alone
    assert np.count_nonzero(f.decoder[7]) == 1


def test_honaker_variances_follow_the_closed_form() -> None:
    # the root estimate of a tree of 2^h rounds has variance 1 / (2 − 2^-h) of one node's
    for h in range(5):
        f = tree_factorization(2**h, 2**h, "honaker")
        assert np.sum(f.decoder[-1] ** 2) == pytest.approx(1 / (2 - 2.0**-h), rel=1e-12)


@pytest.mark.parametrize(("rounds", "restart"), TREE_CASES)
def test_honaker_never_has_more_variance_than_plain(rounds: int, restart: int) -> None:
    plain = np.sum(tree_factorization(rounds, restart, "plain").decoder ** 2, axis=1)
    honaker = np.sum(tree_factorization(rounds, restart, "honaker").decoder ** 2, axis=1)
    assert np.all(honaker <= plain + 1e-12)
    if rounds >= 3 and restart >= 3:  # a prefix ending on an internal node gains
        assert honaker.sum() < plain.sum()


def test_restarts_make_the_strategy_block_diagonal() -> None:
    f = tree_factorization(10, 4, "plain")
    for row, release in zip(f.strategy, f.release_round, strict=True):
        covered = np.flatnonzero(row)
        assert covered.min() // 4 == covered.max() // 4 == release // 4


@pytest.mark.parametrize(("rounds", "bands"), [(1, 3), (12, 1), (12, 3), (40, 5), (30, 30)])
def test_bandmf_is_banded_lower_triangular_and_column_normalised(rounds: int, bands: int) -> None:
    c = bandmf_strategy(rounds, bands)
    assert np.all(c[~band_mask(rounds, bands)] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(c, axis=0), 1.0, rtol=1e-12)
    assert np.all(np.diag(c) > 0)  # invertible
    # A = B·C with B = A C⁻¹, exactly up to rounding
    decoder = prefix_workload(rounds) @ np.linalg.inv(c)
    np.testing.assert_allclose(decoder @ c, prefix_workload(rounds), atol=1e-9)


def test_one_band_is_independent_noise() -> None:
    np.testing.assert_array_equal(bandmf_strategy(9, 1), np.eye(9))


@pytest.mark.parametrize(("rounds", "bands"), [(20, 4), (50, 5), (64, 8)])
def test_bandmf_beats_independent_noise_and_its_start(rounds: int, bands: int) -> None:
    optimised = total_squared_error(bandmf_strategy(rounds, bands))
    start = total_squared_error(sqrt_toeplitz_start(rounds, bands))
    identity = total_squared_error(np.eye(rounds))
    assert identity == rounds * (rounds + 1) / 2
    assert optimised < start < identity
    # more bands, less error (bands ≤ separation keeps the sensitivity at √k)
    assert total_squared_error(bandmf_strategy(rounds, 2 * bands)) < optimised


@pytest.mark.parametrize("power", [1.0, 4.0, 16.0])
def test_objective_gradient_matches_finite_differences(power: float) -> None:
    rounds, bands = 10, 3
    mask = band_mask(rounds, bands)
    a = prefix_workload(rounds)
    rng = np.random.default_rng(0)
    point = sqrt_toeplitz_start(rounds, bands)[mask] + 0.05 * rng.random(int(mask.sum()))
    value, grad = _objective(point, mask, a, power)
    raw = np.zeros((rounds, rounds))
    raw[mask] = point
    c = raw / np.linalg.norm(raw, axis=0)
    if power == 1.0:
        assert value == pytest.approx(total_squared_error(c))
    else:  # ‖r‖_p is between max r and rounds^(1/p) · max r
        assert max_squared_error(c) <= value <= rounds ** (1 / power) * max_squared_error(c)
    error = optimize.check_grad(
        lambda v: _objective(v, mask, a, power)[0],
        lambda v: _objective(v, mask, a, power)[1],
        point,
    )
    assert error < 1e-4 * np.linalg.norm(grad)


def test_max_objective_lowers_the_worst_prefix_error() -> None:
    total = bandmf_strategy(32, 4, objective="total")
    worst = bandmf_strategy(32, 4, objective="max")
    assert max_squared_error(worst) < max_squared_error(total)
    assert total_squared_error(total) <= total_squared_error(worst)
    np.testing.assert_allclose(np.linalg.norm(worst, axis=0), 1.0, rtol=1e-12)
    assert np.all(worst[~band_mask(32, 4)] == 0.0)


def test_strategy_is_deterministic() -> None:
    from defenses.dp_ftrl.banded_factorization import _optimized

    first = bandmf_strategy(24, 4)
    _optimized.cache_clear()
    np.testing.assert_array_equal(first, bandmf_strategy(24, 4))
