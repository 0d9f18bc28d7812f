"""fedguard's PRV kernel (the default PRV accountant's numerics) against Opacus, its reference,
and closed forms; the default PRV accountant never imports Opacus; ``calibrate`` with PRV meets
its target within the accountant's stated error.

Issue 22 item 3: importing Opacus' PRV module runs Opacus' package ``__init__`` (torch, its
privacy engine): 1.7–2.8 s of a cold ``calibrate`` whose four PRV calls took 0.3 s.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedguard.privacy.accountants import PrvAccountant, RdpAccountant
from fedguard.privacy.accountants import prv_kernel as kernel
from fedguard.privacy.accountants.prv import safe_half_width
from fedguard.privacy.calibrate import calibrate_noise_multiplier
from fedguard.privacy.events import sampled_gaussian

DELTA = 1e-5

STEPS = [
    [(0.01, 1.0, 1000)],
    [(0.1, 0.8, 100)],
    [(0.001, 5.0, 10_000)],
    [(0.01, 0.5, 10)],
    [(0.1, 2.0, 300), (1.0, 3.0, 1)],  # a sampled kind and a merged unsampled Gaussian
]


def _domain(steps: list[tuple[float, float, int]]) -> tuple[float, float, float, float]:
    delta_error, eps_error = DELTA / 1000, 0.01
    with np.errstate(divide="ignore", invalid="ignore"):
        half_width = safe_half_width(steps, eps_error, delta_error)
    mesh = eps_error / math.sqrt(sum(n for *_, n in steps) * math.log(12 / delta_error) / 2)
    return half_width, mesh, delta_error, eps_error


@pytest.mark.parametrize("steps", STEPS, ids=lambda s: ",".join(f"{q}/{z}/{n}" for q, z, n in s))
def test_kernel_gives_opacus_epsilon_on_the_same_grid(
    steps: list[tuple[float, float, int]],
) -> None:
    from opacus.accountants.analysis.prv import (
        Domain,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        compose_heterogeneous,
        discretize,
    )

    half_width, mesh, delta_error, eps_error = _domain(steps)
    domain = Domain.create_aligned(-half_width, half_width, mesh)
    grid = kernel.Grid.aligned(half_width, mesh)
    assert (grid.size, grid.t_min) == (domain.size, pytest.approx(domain.t_min, abs=1e-12))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        reference = compose_heterogeneous(
            [
                discretize(
                    TruncatedPrivacyRandomVariable(
                        PoissonSubsampledGaussianPRV(q, z), domain.t_min, domain.t_max
                    ),
                    domain,
                )
                for q, z, _ in steps
            ],
            [n for *_, n in steps],
        )
        expected = reference.compute_epsilon(DELTA, delta_error, eps_error)[2]
        expected_delta = reference.compute_delta_estimate(1.0)
    loss = kernel.compose(steps, grid)
    # measured ≤ 1.7e-8: the two numerical integrals of the truncated mean differ in the 1e-11s
    assert kernel.epsilon_bounds(loss, DELTA, delta_error, eps_error) == pytest.approx(
        expected, rel=1e-7
    )
    assert kernel.delta_estimate(loss, 1.0) == pytest.approx(float(expected_delta), rel=1e-6)
    assert loss.pmf.sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_truncated_mean_of_the_gaussian_loss_is_its_closed_form(sigma: float) -> None:
    # q = 1: the loss of N(1, σ²) vs N(0, σ²) is N(μ²/2, μ²) with μ = 1/σ; truncated to ±w
    mu = 1 / sigma
    m, s, w = mu**2 / 2, mu, 3.0
    a, b = (-w - m) / s, (w - m) / s
    pdf = [math.exp(-(x**2) / 2) / math.sqrt(2 * math.pi) for x in (a, b)]
    mass = (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2))) / 2
    exact = m + s * (pdf[0] - pdf[1]) / mass  # mean of a truncated normal
    assert kernel.truncated_mean(1.0, sigma, -w, w) == pytest.approx(exact, rel=1e-12)


def test_truncated_mean_of_a_subsampled_loss_by_brute_force() -> None:
    # E[Y; Y ≤ t] from a fine Riemann sum of t·dF, independent of the kernel's quadrature
    q, sigma, lo, hi = 0.01, 0.8, -5.0, 20.0
    t = np.linspace(lo, hi, 2_000_001)
    cdf = kernel.loss_cdf(t, q, sigma)
    mids = (t[1:] + t[:-1]) / 2
    brute = float(mids @ np.diff(cdf)) / float(cdf[-1] - cdf[0])
    assert kernel.truncated_mean(q, sigma, lo, hi) == pytest.approx(brute, rel=1e-8)


def test_default_prv_never_imports_opacus() -> None:
    # before: every default PRV call imported opacus (and with it torch)
    code = (
        "import sys\n"
        "from fedguard.privacy.accountants import PrvAccountant\n"
        "from fedguard.privacy.events import sampled_gaussian\n"
        "eps = PrvAccountant().epsilon(sampled_gaussian(0.01, 1.0, 100), 1e-5)\n"
        "print(eps, 'opacus' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out[1:] == ["False", "False"]
    assert float(out[0]) == pytest.approx(
        PrvAccountant(eps_error=0.01).epsilon(sampled_gaussian(0.01, 1.0, 100), 1e-5), abs=0.02
    )


@pytest.mark.parametrize(("target", "rate", "steps"), [(1.0, 0.01, 1000), (0.5, 0.001, 10_000)])
def test_prv_calibration_meets_its_target(target: float, rate: float, steps: int) -> None:
    z = calibrate_noise_multiplier(target, DELTA, steps, rate, accountant="prv")
    prv = PrvAccountant()
    eps = prv.epsilon(sampled_gaussian(rate, z, steps), DELTA)
    # feasible, and tight: within the accountant's stated error max(0.01, 2e-3·ε) plus rtol 1e-3
    stated = max(0.01, 2e-3 * RdpAccountant().epsilon(sampled_gaussian(rate, z, steps), DELTA))
    assert target - stated <= eps <= target
    assert prv.epsilon(sampled_gaussian(rate, z / (1 + 2e-3), steps), DELTA) > target - stated
    # the same answer as Opacus at its default precision, within that precision
    library = PrvAccountant(eps_error=0.01).epsilon(sampled_gaussian(rate, z, steps), DELTA)
    assert abs(library - eps) <= 0.01 + stated


def test_truncated_mean_matches_the_40_digit_reference() -> None:
    # fixtures/make_prv_truncated_means.py (mpmath); Opacus' quad is off by up to 3.9e-7 here
    path = Path(__file__).with_name("fixtures") / "prv_truncated_means.json"
    for entry in json.loads(path.read_text()):
        mean = kernel.truncated_mean(entry["rate"], entry["sigma"], entry["t_min"], entry["t_max"])
        assert mean == pytest.approx(float(entry["mean"]), rel=1e-12), entry
