"""Property tests (hypothesis): monotonicity of the bounds in v, δ, confidence and counts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fedguard.audit import (
    clopper_pearson_epsilon,
    gaussian_pair_delta,
    one_run_epsilon,
    one_run_p_value,
)

FAST = settings(max_examples=25, deadline=None)


@st.composite
def guesses(draw: st.DrawFn) -> tuple[int, int, int]:
    m = draw(st.integers(10, 2000))
    r = draw(st.integers(1, m))
    v = draw(st.integers(0, r - 1))
    return m, r, v


@FAST
@given(guesses(), st.sampled_from([0.0, 1e-7, 1e-5]))
def test_one_more_correct_guess_never_lowers_the_bound(
    counts: tuple[int, int, int], delta: float
) -> None:
    m, r, v = counts
    delta = min(delta, 1 / (2 * m))
    assert one_run_epsilon(m, r, v + 1, delta=delta) >= one_run_epsilon(m, r, v, delta=delta)


@FAST
@given(guesses(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_larger_delta_or_confidence_never_raises_the_bound(
    counts: tuple[int, int, int], a: float, b: float
) -> None:
    m, r, v = counts
    v = r  # strongest evidence, so the bounds are not all zero
    d_small, d_large = sorted((a / (2 * m), b / (2 * m)))
    assert one_run_epsilon(m, r, v, delta=d_large) <= one_run_epsilon(m, r, v, delta=d_small)
    c_low, c_high = sorted((0.5 + 0.49 * a, 0.5 + 0.49 * b))
    assert one_run_epsilon(m, r, v, confidence=c_high) <= one_run_epsilon(m, r, v, confidence=c_low)


@FAST
@given(guesses(), st.floats(0.0, 6.0), st.floats(0.0, 6.0))
def test_p_value_is_non_decreasing_in_epsilon(
    counts: tuple[int, int, int], e1: float, e2: float
) -> None:
    m, r, v = counts
    low, high = sorted((e1, e2))
    delta = 1 / (4 * m)
    assert one_run_p_value(m, r, v, low, delta) <= one_run_p_value(m, r, v, high, delta) + 1e-15


@FAST
@given(st.integers(1, 500), st.data())
def test_clopper_pearson_bound_is_monotone_in_the_counts(n: int, data: st.DataObject) -> None:
    tp = data.draw(st.integers(0, n - 1))
    fp = data.draw(st.integers(1, n))
    base = clopper_pearson_epsilon(tp, n, fp, n).epsilon
    assert clopper_pearson_epsilon(tp + 1, n, fp, n).epsilon >= base
    assert clopper_pearson_epsilon(tp, n, fp - 1, n).epsilon >= base


@FAST
@given(st.floats(-2, 2), st.floats(0.1, 3), st.floats(-2, 2), st.floats(0.1, 3), st.floats(0, 4))
def test_gaussian_pair_delta_is_a_valid_privacy_profile(
    mp: float, sp: float, mq: float, sq: float, eps: float
) -> None:
    d0 = gaussian_pair_delta(0.0, mp, sp, mq, sq)
    d = gaussian_pair_delta(eps, mp, sp, mq, sq)
    assert 0.0 <= d <= d0 <= 1.0 + 1e-12
    assert gaussian_pair_delta(eps, mq, sq, mp, sp) == d
