"""Shamir sharing: any t of n reconstruct, t − 1 do not and look uniform; Lagrange vs. exact."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedguard.defenses.secure_aggregation import shamir

PRIMES = [shamir.MERSENNE_31, shamir.MERSENNE_127]


@pytest.mark.parametrize("prime", PRIMES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_t_of_n_reconstruct_and_t_minus_one_fail(prime: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 25), label="n")
    t = data.draw(st.integers(2, n), label="t")
    ids = data.draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n, unique=True))
    xs = np.asarray([i + 1 for i in ids], dtype=np.int64)
    secret = os.urandom(32)
    elements = shamir.secret_to_field(secret, prime)
    shares = shamir.split(elements, xs, t, prime)  # (n, chunks)
    subset = data.draw(st.permutations(range(n)))[:t]
    rec = shamir.combine(shares[subset], xs[subset], prime)
    assert shamir.field_to_secret(rec, 32, prime) == secret
    short = subset[: t - 1]
    wrong = shamir.combine(shares[short], xs[short], prime)
    assert not np.array_equal(np.asarray(wrong, dtype=object), np.asarray(elements, dtype=object))


@pytest.mark.parametrize("prime", PRIMES)
def test_large_split_combine_round_trip(prime: int) -> None:
    """n = 1000, t = 501 (the size the issue names; timed in the benchmark)."""
    secret = os.urandom(32)
    xs = np.arange(1, 1001, dtype=np.int64)
    shares = shamir.split(shamir.secret_to_field(secret, prime), xs, 501, prime)
    pick = np.random.default_rng(1).choice(1000, 501, replace=False)
    rec = shamir.combine(shares[pick], xs[pick], prime)
    assert shamir.field_to_secret(rec, 32, prime) == secret


@pytest.mark.parametrize("prime", PRIMES)
def test_lagrange_coefficients_match_exact_rationals(prime: int) -> None:
    xs = [3, 7, 8, 20, 101, 4000]
    lam = shamir.lagrange_at_zero(np.asarray(xs, dtype=np.int64), prime)
    for i, xi in enumerate(xs):
        exact = Fraction(1)
        for j, xj in enumerate(xs):
            if j != i:
                exact *= Fraction(xj, xj - xi)
        expected = exact.numerator * pow(exact.denominator, prime - 2, prime) % prime
        assert int(lam[i]) == expected


def test_polynomial_evaluation_matches_direct_sum() -> None:
    """Shares are f(x) for a degree t − 1 polynomial with f(0) = secret: t + 1 points agree."""
    prime = shamir.MERSENNE_31
    xs = np.arange(1, 9, dtype=np.int64)
    secret = np.asarray([123456789, 0, prime - 1], dtype=np.int64)
    shares = shamir.split(secret, xs, 4, prime)
    a = shamir.combine(shares[:4], xs[:4], prime)
    b = shamir.combine(shares[4:], xs[4:], prime)
    assert np.array_equal(a, secret) and np.array_equal(b, secret)
    assert np.array_equal(shamir.split(secret, xs, 1, prime), np.tile(secret, (8, 1)))


def test_fewer_than_t_shares_are_uniform_whatever_the_secret() -> None:
    """t − 1 = 2 shares of secret 0 and of secret p − 1: uniform in GF(p) (chi-square)."""
    prime = shamir.MERSENNE_31
    xs = np.asarray([5, 9, 12], dtype=np.int64)
    bins = 32
    for secret in (0, prime - 1):
        sec = np.full(4000, secret, dtype=np.int64)  # many independent chunks at once
        shares = shamir.split(sec, xs, 3, prime)[:2]  # (2, 4000): two holders only
        counts = np.bincount((shares.ravel() * bins // prime).astype(np.int64), minlength=bins)
        assert stats.chisquare(counts).pvalue > 1e-4
        # The two visible shares are also independent of each other (uniform pairs).
        pair = (shares[0] * 4 // prime) * 4 + shares[1] * 4 // prime
        assert stats.chisquare(np.bincount(pair, minlength=16)).pvalue > 1e-4


def test_secret_bytes_round_trip_and_bad_inputs() -> None:
    for prime in PRIMES:
        for secret in (bytes(32), b"\xff" * 32, os.urandom(32)):
            el = shamir.secret_to_field(secret, prime)
            assert len(el) == shamir.chunks_per_secret(32, prime)
            assert shamir.field_to_secret(el, 32, prime) == secret
            raw = shamir.elements_to_bytes(el, prime)
            assert len(raw) == len(el) * shamir.element_bytes(prime)
            assert np.array_equal(
                np.asarray(shamir.bytes_to_elements(raw, prime), dtype=object),
                np.asarray(el, dtype=object),
            )
    xs = np.asarray([1, 2, 3], dtype=np.int64)
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(np.asarray([1], dtype=np.int64), xs, 4, shamir.MERSENNE_31)
    with pytest.raises(ValueError, match="distinct"):
        shamir.split(np.asarray([1], dtype=np.int64), np.asarray([1, 1]), 1, shamir.MERSENNE_31)
    with pytest.raises(ValueError, match=r"1 \.\. prime"):
        shamir.split(np.asarray([1], dtype=np.int64), np.asarray([0, 1]), 1, shamir.MERSENNE_31)
    with pytest.raises(ValueError, match="inconsistent"):
        shamir.field_to_secret(np.asarray([1 << 30] * 9), 32, shamir.MERSENNE_31)
    with pytest.raises(ValueError):
        shamir.prime_for_bits(61)


def test_combine_many_matches_combine_for_each_point_set() -> None:
    from fedguard.defenses.secure_aggregation.shamir import (
        MERSENNE_31,
        combine,
        combine_many,
        split,
    )

    rng = np.random.default_rng(4)
    secrets = rng.integers(0, MERSENNE_31, (5, 3))  # 5 owners, 3 field elements each
    t = 4
    batch, points = [], []
    for i in range(5):
        xs = np.sort(rng.choice(np.arange(1, 40), 7, replace=False)).astype(np.int64)
        shares = split(secrets[i], xs, t, MERSENNE_31)  # (7, 3)
        pick = np.sort(rng.choice(7, t, replace=False))
        batch.append(shares[pick])
        points.append(xs[pick])
    got = combine_many(np.stack(batch), np.stack(points), MERSENNE_31)
    assert np.array_equal(got.astype(np.int64), secrets)
    for i in range(5):
        assert np.array_equal(got[i], combine(batch[i], points[i], MERSENNE_31))
