"""Privacy-attack metrics against closed forms and reference libraries (sklearn, scipy)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fedguard.metrics.privacy_attack_metrics import (
    auc,
    class_mean_psnr,
    clopper_pearson,
    dp_consistency,
    exact_match_rate,
    feature_abs_error,
    hungarian_match,
    label_multiset_accuracy,
    mean_image_psnr,
    mse_per_sample,
    psnr_per_sample,
    recovered,
    roc_curve,
    ssim_per_sample,
    tpr_at_fpr,
)


def test_mse_and_psnr_closed_form() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 → PSNR 20 dB on range 1
    y[1, 0, 0, 0] = 0.5  # MSE 0.25/16
    mse = mse_per_sample(y, x)
    assert torch.allclose(mse, torch.tensor([0.01, 0.25 / 16], dtype=torch.float64))
    psnr = psnr_per_sample(y, x, 1.0)
    assert psnr[0].item() == pytest.approx(20.0, abs=1e-9)
    assert psnr[1].item() == pytest.approx(10 * math.log10(16 / 0.25), abs=1e-9)
    assert psnr_per_sample(x, x).isinf().all()
    assert psnr_per_sample(y * 2, x * 2, 2.0)[0].item() == pytest.approx(20.0, abs=1e-9)


def _ssim_reference(a: np.ndarray, b: np.ndarray, side: int, sigma: float, rng: float) -> float:
    """Independent per-window SSIM (Wang et al. 2004, Gaussian window, valid positions)."""
    c = np.arange(side) - (side - 1) / 2
    g = np.exp(-(c**2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    vals = []
    for i in range(a.shape[0] - side + 1):
        for j in range(a.shape[1] - side + 1):
            pa, pb = a[i : i + side, j : j + side], b[i : i + side, j : j + side]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


def test_ssim_matches_windowed_reference_and_invariants() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 8, 8, generator=gen)
    b = (a + 0.1 * torch.randn(3, 1, 8, 8, generator=gen)).clamp(0, 1)
    got = ssim_per_sample(b, a)
    for k in range(3):
        ref = _ssim_reference(b[k, 0].double().numpy(), a[k, 0].double().numpy(), 7, 1.5, 1.0)
        assert got[k].item() == pytest.approx(ref, abs=1e-10)
    assert torch.allclose(ssim_per_sample(a, a), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(ssim_per_sample(a, b), got)  # symmetric
    assert (got < 1).all()


def test_hungarian_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(1)
    orig = torch.rand(5, 6, generator=gen)
    perm = torch.tensor([3, 0, 4, 1, 2])
    rec = orig[perm] + 0.3 * torch.rand(5, 6, generator=gen)
    rows, cols = hungarian_match(rec, orig)
    cost = torch.cdist(rec.double(), orig.double()) ** 2
    best = min(
        sum(float(cost[i, p[i]]) for i in range(5)) for p in itertools.permutations(range(5))
    )
    assert float(cost[rows, cols].sum()) == pytest.approx(best, rel=1e-12)
    # rectangular: 3 reconstructions of 5 originals
    rows, cols = hungarian_match(orig[[4, 1, 2]], orig)
    assert cols.tolist() == [4, 1, 2]


def test_tabular_and_label_metrics() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    y = torch.tensor([[0.0, 1.5], [2.0, 2.0]])
    assert feature_abs_error(y, x).tolist() == [0.0, 0.75]
    assert exact_match_rate(y, x, 0.1) == 0.5
    assert label_multiset_accuracy(torch.tensor([1, 1, 2]), torch.tensor([2, 1, 3]), 4) == (
        pytest.approx(2 / 3)
    )


def test_roc_and_auc_match_sklearn() -> None:
    gen = np.random.default_rng(0)
    labels = gen.random(300) < 0.4
    scores = gen.normal(size=300) + labels * 0.8
    scores[:50] = np.round(scores[:50], 1)  # some ties
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    roc = roc_curve(scores, labels)
    assert np.allclose(roc.fpr, fpr) and np.allclose(roc.tpr, tpr)


def test_clopper_pearson_matches_scipy_exact_interval() -> None:
    for k, n in [(0, 20), (3, 20), (20, 20), (17, 1000)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        lo, hi = clopper_pearson(k, n, 0.95)
        assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_tpr_at_fpr_and_low_fpr_warning() -> None:
    scores = np.r_[np.arange(100, 200), np.arange(0, 100)].astype(float)
    members = np.r_[np.ones(100), np.zeros(100)]
    scores[100] = 150.5  # one non-member scores among the members
    r = tpr_at_fpr(scores, members, 0.02)
    assert r.fpr == 0.01 and r.tpr == 1.0 and r.reliable
    # FPR strictly below 1%: the point with one false positive (FPR = 1%) is not admissible
    r = tpr_at_fpr(scores, members, 0.01)
    assert r.fpr == 0.0 and r.tpr == pytest.approx(49 / 100) and r.reliable
    with pytest.warns(UserWarning, match="need at least 200"):
        r0 = tpr_at_fpr(scores, members, 0.005)  # below 1/100: must exclude the false positive
    assert r0.fpr == 0.0 and r0.tpr == pytest.approx(49 / 100)
    assert not r0.reliable and not r0.enough_nonmembers and not r0.tied_at_threshold
    with pytest.warns(UserWarning, match="not meaningful"):
        r1 = tpr_at_fpr(scores, members, 0.001)
    assert not r1.reliable


def test_tpr_at_fpr_follows_the_lira_reference_convention() -> None:
    """``tpr[np.where(fpr < target)[0][-1]]`` on sklearn's full ROC (Carlini et al.'s code)."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(20, 400))
        labels = np.r_[True, False, rng.random(n) < 0.5]
        scores = rng.normal(size=n + 2) + labels
        if trial % 2:
            scores = np.round(scores, 1)  # ties
        target = (0.01, 0.05, 0.1, 0.3)[trial % 4]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            got = tpr_at_fpr(scores, labels, target)
        fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
        i = np.where(fpr < target)[0][-1]
        assert got.tpr == pytest.approx(tpr[i], abs=1e-12) and got.fpr == pytest.approx(fpr[i])
        fpr_thin, tpr_thin, _ = sk_roc_curve(labels, scores)  # the reference's default thinning
        assert got.tpr >= tpr_thin[np.where(fpr_thin < target)[0][-1]] - 1e-12


def test_tpr_at_fpr_flags_ties_at_the_threshold() -> None:
    """RMIA-like scores: 34 candidates tied at the top score, one of them a non-member of 100.
    Counting FPR ≤ 1% reported 33/100; strictly below 1% it is 0, flagged as tie-dependent."""
    members = np.r_[np.ones(100), np.zeros(100)].astype(bool)
    scores = np.r_[np.linspace(0.2, 0.9, 100), np.linspace(0.0, 0.5, 100)]
    scores[:33] = 1.0  # 33 members ...
    scores[100] = 1.0  # ... and one non-member share the top score
    with pytest.warns(UserWarning, match="tie-breaking"):
        r = tpr_at_fpr(scores, members, 0.01)
    assert r.tpr == 0.0 and r.fpr == 0.0
    assert r.tied_at_threshold and not r.reliable and r.enough_nonmembers
    assert r.tpr_if_ties_broken == pytest.approx(0.33)
    # a tie among members only is harmless
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clean = tpr_at_fpr(np.r_[np.ones(10), np.arange(90) / 100, -np.ones(100)], members, 0.01)
    assert clean.tpr == 1.0 and clean.reliable and not clean.tied_at_threshold


def test_dp_consistency_reference_epsilon_lower_bound() -> None:
    # ALGORITHMS.md: 1000/1000 TP, 0/1000 FP, 95% two-sided → ε_LB ≈ 5.60 (Jagielski et al.)
    scores = np.r_[np.ones(1000), np.zeros(1000)]
    members = np.r_[np.ones(1000), np.zeros(1000)]
    tpr_lo, _ = clopper_pearson(1000, 1000)
    _, fpr_hi = clopper_pearson(0, 1000)
    eps_lb = math.log(tpr_lo / fpr_hi)
    assert eps_lb == pytest.approx(5.60, abs=0.005)
    assert not dp_consistency(scores, members, eps_lb - 0.01, 0.0).consistent
    assert dp_consistency(scores, members, eps_lb + 0.01, 0.0).consistent
    # a chance-level attack is consistent with ε = 0
    gen = np.random.default_rng(2)
    assert dp_consistency(gen.random(2000), gen.random(2000) < 0.5, 0.0, 0.0).consistent


def test_trivial_inversion_baselines_closed_form() -> None:
    ref = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.2, 0.2], [0.6, 0.6]])
    ref_y = torch.tensor([0, 0, 1, 1])
    orig = torch.tensor([[0.5, 0.5], [0.4, 0.4]])
    # dataset mean (0.45, 0.325): MSEs ((0.05² + 0.175²)/2, (0.05² + 0.075²)/2)
    mse = torch.tensor([(0.05**2 + 0.175**2) / 2, (0.05**2 + 0.075**2) / 2], dtype=torch.float64)
    assert torch.allclose(mean_image_psnr(orig, ref), 10 * torch.log10(1 / mse))
    # class means: class 0 (0.5, 0.25), class 1 (0.4, 0.4) — the second sample is exact
    base = class_mean_psnr(orig, torch.tensor([0, 1]), ref, ref_y)
    assert base[0].item() == pytest.approx(10 * math.log10(1 / (0.25**2 / 2)))
    assert base[1].item() > 100  # exact up to float32 rounding
    # a class absent from the reference falls back to the dataset mean
    absent = class_mean_psnr(orig, torch.tensor([7, 7]), ref, ref_y)
    assert torch.allclose(absent, mean_image_psnr(orig, ref))
    psnr = torch.tensor([20.0, 20.0, 13.0, 30.0], dtype=torch.float64)
    got = recovered(
        psnr, torch.tensor([17.0, 10.0, 10.0, 1.0]), torch.tensor([12.0, 17.1, 9.0, 27.0])
    )
    assert got.tolist() == [True, False, True, True]
