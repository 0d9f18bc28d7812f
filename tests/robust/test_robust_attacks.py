"""Model-poisoning attacks: closed forms, the papers' constants, reference fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from robust_testkit import honest_updates, make_attack_ctx, make_ctx

from fedguard import registry
from fedguard.attacks.poisoning.aggregator_aware import AggregatorAware, deviation
from fedguard.attacks.poisoning.alie import ALIE, alie_z
from fedguard.attacks.poisoning.common import perturbation
from fedguard.attacks.poisoning.fang import Fang, fang_krum_lambda_bound, krum_selects_malicious
from fedguard.attacks.poisoning.gaussian import GaussianAttack
from fedguard.attacks.poisoning.ipm import IPM
from fedguard.attacks.poisoning.mimic import Mimic
from fedguard.attacks.poisoning.min_max import MinMax, min_max_gamma
from fedguard.attacks.poisoning.min_sum import MinSum, min_sum_gamma
from fedguard.attacks.poisoning.scaling import Scaling
from fedguard.attacks.poisoning.sign_flip import SignFlip
from fedguard.defenses.robust.median import Median
from fedguard.errors import ConfigError

REF = json.loads((Path(__file__).parent / "fixtures" / "reference.json").read_text())
HONEST = torch.tensor(REF["honest"], dtype=torch.float64)

ATTACK_NAMES = [
    "sign_flip",
    "gaussian",
    "scaling",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "fang",
    "mimic",
    "aggregator_aware",
]


def _mean_agg(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=0)


@pytest.mark.parametrize(
    ("n", "f", "z"), [(25, 5, 0.4677), (10, 2, 0.2533)], ids=["n25f5", "n10f2"]
)
def test_alie_z_matches_paper(n: int, f: int, z: float) -> None:
    assert abs(alie_z(n, f) - z) < 1e-4


def test_alie_against_fixture_and_closed_form() -> None:
    ctx = make_attack_ctx(HONEST, n_malicious=2)  # n = 8 + 2 = 10, f = 2
    out = ALIE()(HONEST, ctx)
    assert out.shape == (2, HONEST.shape[1])
    expected = torch.tensor(REF["attacks"]["alie_n10_f2"], dtype=torch.float64)
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], expected)
    fixed = ALIE(z_override=1.0)(HONEST, ctx)
    torch.testing.assert_close(fixed[0], HONEST.mean(0) - HONEST.std(0))


def test_ipm_sign_flip_scaling_closed_forms() -> None:
    x = honest_updates(6, 5, dtype=torch.float64)
    own = x[:2] * 3
    ctx = make_attack_ctx(x, n_malicious=2, own=own)
    torch.testing.assert_close(IPM(epsilon=0.5)(x, ctx), (-0.5 * x.mean(0)).expand(2, -1))
    torch.testing.assert_close(SignFlip()(x, ctx), -own)
    torch.testing.assert_close(Scaling()(x, ctx), own * (8 / 2))  # n / b
    torch.testing.assert_close(Scaling(boost=3.0)(x, ctx), own * 3)
    assert not SignFlip.omniscient and not Scaling.omniscient


def test_ipm_large_epsilon_reverses_the_mean() -> None:
    x = honest_updates(16, 5, dtype=torch.float64)
    f = 4
    eps = (16 / f) * 1.5  # above (n − f)/f with n − f = 16 honest
    mal = IPM(epsilon=eps)(x, make_attack_ctx(x, n_malicious=f))
    agg = torch.cat([x, mal]).mean(0)
    assert float(agg @ x.mean(0)) < 0


@pytest.mark.parametrize("kind", ["unit_vec", "sign", "std"])
def test_min_max_and_min_sum_gamma_against_authors_search(kind: str) -> None:
    p = perturbation(HONEST, kind)
    gmax = min_max_gamma(HONEST, p, 10.0, 1e-5)
    gsum = min_sum_gamma(HONEST, p, 10.0, 1e-5)
    assert gmax == pytest.approx(REF["attacks"]["min_max_gamma"][kind], abs=1e-9)
    assert gsum == pytest.approx(REF["attacks"]["min_sum_gamma"][kind], abs=1e-9)


def test_min_max_and_min_sum_constraints_hold_and_are_tight() -> None:
    ctx = make_attack_ctx(HONEST, n_malicious=3)
    mu = HONEST.mean(0)
    pair = torch.cdist(HONEST, HONEST) ** 2
    mm = MinMax()(HONEST, ctx)
    ms = MinSum()(HONEST, ctx)
    assert mm.shape == (3, HONEST.shape[1])
    dists = ((mm[0] - HONEST) ** 2).sum(1)
    assert float(dists.max()) <= float(pair.max()) + 1e-9
    assert float(((ms[0] - HONEST) ** 2).sum()) <= float(pair.sum(1).min()) + 1e-9
    # Tight: a slightly larger γ violates the bound.
    p = perturbation(HONEST, "unit_vec")
    g = min_max_gamma(HONEST, p, 10.0, 1e-5)
    beyond = mu - (g + 1e-3) * p
    assert float(((beyond - HONEST) ** 2).sum(1).max()) > float(pair.max())


def test_fang_trimmed_mean_goes_beyond_the_honest_extremes() -> None:
    x = honest_updates(10, 7, seed=4, dtype=torch.float64)
    ctx = make_attack_ctx(x, n_malicious=3, seed=1)
    mal = Fang(target="trimmed_mean")(x, ctx)
    s = torch.sign(x.mean(0))
    lo, hi = x.min(0).values, x.max(0).values
    pos = s > 0
    assert bool((mal[:, pos] <= lo[pos]).all()) and bool((mal[:, ~pos] >= hi[~pos]).all())
    # Within the paper's bands (b = 2).
    band_lo = torch.where(lo > 0, lo / 2, lo * 2)
    assert bool((mal[:, pos] >= band_lo[pos] - 1e-12).all())
    again = Fang(target="trimmed_mean")(x, make_attack_ctx(x, n_malicious=3, seed=1))
    assert torch.equal(mal, again)


def test_fang_krum_gets_selected() -> None:
    # Honest updates spread widely around a small mean (noisy gradients): the regime of the paper.
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.3
    ctx = make_attack_ctx(x, n_malicious=3)
    mal = Fang(target="krum")(x, ctx)
    lam = float(torch.linalg.vector_norm(mal[0]) / math.sqrt(6))
    assert lam <= fang_krum_lambda_bound(x, 15, 3) + 1e-12
    assert torch.equal(mal[0], mal[1])
    assert krum_selects_malicious(torch.cat([mal, x]), 3, 3)
    assert float(mal[0] @ x.mean(0)) < 0
    assert 0 < lam < fang_krum_lambda_bound(x, 15, 3)  # halved at least once here


def test_mimic_copies_an_honest_update() -> None:
    x = honest_updates(9, 5, seed=6, dtype=torch.float64)
    out = Mimic()(x, make_attack_ctx(x, n_malicious=2))
    assert any(torch.equal(out[0], row) for row in x)
    torch.testing.assert_close(Mimic(target_row=4)(x, make_attack_ctx(x, n_malicious=2))[1], x[4])


def test_aggregator_aware_maximises_deviation() -> None:
    x = honest_updates(10, 6, seed=8, dtype=torch.float64)
    med = Median()

    def median_agg(u: torch.Tensor) -> torch.Tensor:
        return med(u, None, make_ctx(u.shape[1])).aggregate

    attack = AggregatorAware()
    ctx = make_attack_ctx(x, n_malicious=3, aggregator=median_agg)
    gamma = attack.best_gamma(x, ctx)
    p = perturbation(x, "unit_vec")
    best = deviation(median_agg, x, p, gamma, 3)
    grid = torch.logspace(-2, 2, 17, dtype=torch.float64)
    assert all(best >= deviation(median_agg, x, p, float(g), 3) - 1e-12 for g in grid)
    # Against the plain mean the deviation grows with γ: the search ends at gamma_max.
    ctx_mean = make_attack_ctx(x, n_malicious=3, aggregator=_mean_agg)
    assert attack.best_gamma(x, ctx_mean) == pytest.approx(100.0)
    assert AggregatorAware.knows_aggregator
    with pytest.raises(ConfigError, match="aggregation rule"):
        attack(x, make_attack_ctx(x, n_malicious=3))


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_shape_dtype_determinism(name: str) -> None:
    cls = registry.get("model_attack", name)
    x = honest_updates(9, 5, seed=1)
    agg = _mean_agg if cls.knows_aggregator else None
    a = cls()(x, make_attack_ctx(x, n_malicious=3, seed=4, aggregator=agg))
    b = cls()(x, make_attack_ctx(x, n_malicious=3, seed=4, aggregator=agg))
    assert a.shape == (3, 5) and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert bool(torch.isfinite(a).all())


def test_gaussian_attack_scale() -> None:
    x = honest_updates(4, 20_000)
    out = GaussianAttack(std=2.0)(x, make_attack_ctx(x, n_malicious=2))
    assert abs(float(out.std()) - 2.0) < 0.05
    with pytest.raises(ConfigError, match="std"):
        GaussianAttack(std=-1.0)
