"""One-run auditing (Steinke, Nasr and Jagielski 2023): published figures, properties, validity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special

from fedguard.audit import (
    default_guess_grid,
    max_certifiable_epsilon,
    one_run_audit,
    one_run_epsilon,
    one_run_guesses,
    one_run_p_value,
    score_guesses,
)
from fedguard.errors import ConfigError


def reference_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Term-by-term transcription of the paper's p-value (with the δ term), as an oracle."""
    q = math.exp(eps) / (1 + math.exp(eps))
    tail = sum(math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(v, r + 1))
    alpha, window = 0.0, 0.0
    for i in range(1, v + 1):
        j = v - i
        window += math.comb(r, j) * q**j * (1 - q) ** (r - j)  # P[v − i ≤ Bin < v]
        alpha = max(alpha, window / i)
    return min(tail + alpha * delta * 2 * m, 1.0)


@pytest.mark.parametrize(
    ("m", "r", "v", "delta", "expected"),
    [
        (1000, 100, 100, 0.0, 3.4930),
        (1000, 100, 100, 1e-5, 3.4654),
        (1000, 1000, 1000, 0.0, 5.8091),
    ],
)
def test_published_figures(m: int, r: int, v: int, delta: float, expected: float) -> None:
    assert one_run_epsilon(m, r, v, confidence=0.95, delta=delta) == pytest.approx(
        expected, abs=5e-5
    )


def test_delta_zero_has_a_closed_form_when_every_guess_is_right() -> None:
    # P[Bin(r, q) ≥ r] = q^r = β  ⇒  q = β^(1/r), ε = logit(q)
    for r in (10, 100, 1000):
        q = 0.05 ** (1 / r)
        assert one_run_epsilon(1000, r, r) == pytest.approx(math.log(q / (1 - q)), abs=1e-8)


@pytest.mark.parametrize(("r", "v"), [(20, 15), (100, 80), (60, 60), (200, 130)])
@pytest.mark.parametrize("eps", [0.0, 0.7, 2.5])
@pytest.mark.parametrize("delta", [0.0, 1e-5, 1e-4])
def test_p_value_matches_term_by_term_reference(r: int, v: int, eps: float, delta: float) -> None:
    m = 1000
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(
        reference_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15
    )


def test_p_value_is_non_decreasing_in_epsilon() -> None:
    grid = np.linspace(0.0, 8.0, 161)
    for r, v, delta in [(100, 90, 0.0), (100, 90, 5e-4), (500, 450, 1e-4), (50, 50, 5e-4)]:
        p = [one_run_p_value(1000, r, v, e, delta) for e in grid]
        assert all(a <= b + 1e-15 for a, b in itertools.pairwise(p))


def test_bound_is_the_largest_epsilon_with_small_p_value() -> None:
    eps = one_run_epsilon(1000, 300, 250, confidence=0.95, delta=1e-5)
    assert one_run_p_value(1000, 300, 250, eps, 1e-5) <= 0.05
    assert one_run_p_value(1000, 300, 250, eps + 1e-6, 1e-5) > 0.05


def test_monotone_in_correct_guesses_delta_and_confidence() -> None:
    by_v = [one_run_epsilon(1000, 200, v) for v in range(100, 201, 10)]
    assert by_v[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(by_v[1:]))
    by_delta = [one_run_epsilon(1000, 200, 190, delta=d) for d in (0, 1e-6, 1e-5, 1e-4, 5e-4)]
    assert all(a > b for a, b in itertools.pairwise(by_delta))
    by_conf = [one_run_epsilon(1000, 200, 190, confidence=c) for c in (0.5, 0.9, 0.95, 0.99)]
    assert all(a > b for a, b in itertools.pairwise(by_conf))


def test_chance_level_guessing_certifies_nothing() -> None:
    assert one_run_epsilon(1000, 200, 100) == 0.0
    assert one_run_epsilon(1000, 0, 0) == 0.0


def test_ceiling_for_1000_canaries_and_its_growth() -> None:
    assert max_certifiable_epsilon(1000) == pytest.approx(5.8091, abs=5e-5)
    ceilings = [max_certifiable_epsilon(m, delta=1e-5 if m >= 100 else 0) for m in (100, 1000)]
    assert ceilings[0] < ceilings[1]
    # Guessing on all m canaries is where the ceiling is reached (δ > 0 included).
    for delta in (0.0, 1e-5, 1e-4):
        full = max_certifiable_epsilon(1000, delta=delta)
        partial = [max_certifiable_epsilon(1000, delta=delta, n_guesses=r) for r in (50, 400, 900)]
        assert all(p < full for p in partial)
    # A union bound over G hypotheses lowers the ceiling.
    assert max_certifiable_epsilon(1000, n_hypotheses=16) < max_certifiable_epsilon(1000)


def test_guesses_take_top_and_bottom_and_abstain_in_the_middle() -> None:
    scores = np.array([0.3, 5.0, -1.0, 2.0, 2.0, 0.0])
    guesses = one_run_guesses(scores, 2, 1)
    # ascending stable order: 2(-1.0), 5(0.0), 0(0.3), 3(2.0), 4(2.0), 1(5.0)
    assert guesses.tolist() == [0, 1, -1, 0, 1, 0]
    assert score_guesses(guesses, np.array([False, True, False, True, True, False])) == (3, 3)
    assert score_guesses(guesses, np.array([True, False, True, False, False, True])) == (3, 0)


def test_default_grid_points_are_feasible() -> None:
    grid = default_guess_grid(1000)
    assert (500, 500) in grid and (10, 0) in grid
    assert all(kp + km <= 1000 and kp >= 1 for kp, km in grid)
    assert len(set(grid)) == len(grid)


def test_audit_of_perfectly_separated_canaries_reaches_the_corrected_ceiling() -> None:
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included.astype(float) + rng.uniform(0, 0.1, 1000)
    result = one_run_audit(scores, included, delta=1e-5)
    assert result.kind == "lower_bound"
    assert result.details["n_correct"] == result.details["n_guesses"]
    grid = default_guess_grid(1000)
    largest_all_correct = max(
        kp + km for kp, km in grid if kp <= included.sum() and km <= (~included).sum()
    )
    assert result.epsilon == pytest.approx(
        max_certifiable_epsilon(
            1000, confidence=1 - 0.05 / len(grid), delta=1e-5, n_guesses=largest_all_correct
        ),
        abs=1e-8,
    )
    assert result.epsilon <= result.details["ceiling"] <= result.details["ceiling_single"]


def test_single_guess_point_is_tested_without_correction() -> None:
    rng = np.random.default_rng(1)
    included = rng.random(400) < 0.5
    scores = included * 1.0 + rng.normal(0, 0.8, 400)
    result = one_run_audit(scores, included, guess_counts=[(50, 50)])
    r, v = score_guesses(one_run_guesses(scores, 50, 50), included)
    assert result.epsilon == pytest.approx(one_run_epsilon(400, r, v), abs=1e-12)
    assert result.details["n_hypotheses"] == 1


@pytest.mark.parametrize("true_epsilon", [1.0, 3.0])
def test_valid_and_tight_on_randomized_response(true_epsilon: float) -> None:
    """Each canary's inclusion bit is released by ε-DP randomized response (the worst case of the
    analysis): the bound never exceeds ε on these fixed seeds and gets within 30% of it."""
    bounds = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        included = rng.random(1000) < 0.5
        keep = rng.random(1000) < special.expit(true_epsilon)
        released = np.where(keep, included, ~included).astype(float)
        bounds.append(one_run_audit(released, included).epsilon)
    assert max(bounds) <= true_epsilon
    assert float(np.mean(bounds)) >= 0.7 * true_epsilon


def test_independent_scores_certify_little() -> None:
    rng = np.random.default_rng(7)
    included = rng.random(1000) < 0.5
    result = one_run_audit(rng.normal(size=1000), included)
    assert result.epsilon < 0.3


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="delta"):
        one_run_epsilon(1000, 10, 10, delta=1e-3)  # > 1/(2m)
    with pytest.raises(ConfigError, match="n_correct"):
        one_run_p_value(100, 10, 11, 1.0)
    with pytest.raises(ConfigError, match="n_guesses"):
        one_run_p_value(100, 101, 1, 1.0)
    with pytest.raises(ConfigError, match="included"):
        one_run_audit(np.zeros(5), np.zeros(4, dtype=bool))
    with pytest.raises(ConfigError, match="n_positive_guesses"):
        one_run_guesses(np.zeros(5), 4, 3)
