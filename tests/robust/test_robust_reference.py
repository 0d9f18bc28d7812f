"""Aggregators and pre-aggregators against reference values and closed forms.

``fixtures/reference.json`` holds outputs of independent naive NumPy implementations (no
established robust-aggregation library is available offline; see ``fixtures/make_reference.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from robust_testkit import make_ctx
from scipy.optimize import minimize
from scipy.stats import trim_mean

from fedguard.defenses.robust.arc import ARC, arc_clip_count
from fedguard.defenses.robust.bulyan import Bulyan
from fedguard.defenses.robust.centered_clipping import CenteredClipping
from fedguard.defenses.robust.cge import CGE
from fedguard.defenses.robust.dnc import DnC
from fedguard.defenses.robust.fltrust import FLTrust
from fedguard.defenses.robust.foolsgold import FoolsGold, foolsgold_weights
from fedguard.defenses.robust.geometric_median import GeometricMedian
from fedguard.defenses.robust.kernels import pairwise_sq_distances
from fedguard.defenses.robust.krum import Krum
from fedguard.defenses.robust.mda import MDA
from fedguard.defenses.robust.meamed import Meamed
from fedguard.defenses.robust.median import Median
from fedguard.defenses.robust.multi_krum import MultiKrum
from fedguard.defenses.robust.nnm import NNM
from fedguard.defenses.robust.norm_bound import NormBound
from fedguard.defenses.robust.sign_majority import SignMajority
from fedguard.defenses.robust.trimmed_mean import TrimmedMean
from fedguard.errors import ConfigError

REF = json.loads((Path(__file__).parent / "fixtures" / "reference.json").read_text())
X = torch.tensor(REF["updates"], dtype=torch.float64)
F = REF["n_byzantine"]
D = X.shape[1]


def _ref(name: str, group: str = "aggregators") -> torch.Tensor:
    return torch.tensor(REF[group][name], dtype=torch.float64)


RULES_VS_FIXTURE: list[tuple[str, Any]] = [
    ("median", Median()),
    ("trimmed_mean", TrimmedMean()),
    ("krum", Krum()),
    ("multi_krum", MultiKrum()),
    ("bulyan", Bulyan()),  # n = 11 = 4f + 3
    ("meamed", Meamed()),
    ("mda", MDA()),
    ("cge", CGE()),
    ("geometric_median", GeometricMedian(tolerance=1e-15, max_iterations=100_000)),
    ("sign_majority", SignMajority()),
    ("dnc", DnC(subsample_dim=10**6, n_iterations=3)),  # all coordinates: no randomness
]


@pytest.mark.parametrize(("name", "rule"), RULES_VS_FIXTURE, ids=[r[0] for r in RULES_VS_FIXTURE])
def test_against_reference_fixture(name: str, rule: Any) -> None:
    res = rule(X, None, make_ctx(D, n_byzantine=F))
    tol = 1e-6 if name == "geometric_median" else 1e-9
    torch.testing.assert_close(res.aggregate, _ref(name), rtol=tol, atol=tol)


def test_krum_scores_use_n_minus_f_minus_2_neighbours() -> None:
    res = Krum()(X, None, make_ctx(D, n_byzantine=F))
    torch.testing.assert_close(res.scores, _ref("krum_scores"), rtol=1e-9, atol=1e-9)
    # With n − f − 1 neighbours (the other convention) the scores differ.
    d2 = pairwise_sq_distances(X)
    d2.fill_diagonal_(float("inf"))
    other = torch.topk(d2, k=X.shape[0] - F - 1, dim=1, largest=False).values.sum(1)
    assert not torch.allclose(other, res.scores)


def test_krum_closed_form_picks_the_cluster() -> None:
    # Five points near 0 and two far away: Krum (f = 2) must return a point of the cluster.
    x = torch.tensor([[0.0], [0.1], [-0.1], [0.2], [-0.2], [50.0], [60.0]], dtype=torch.float64)
    res = Krum()(x, None, make_ctx(1, n_byzantine=2))
    assert float(res.aggregate) == 0.0  # n − f − 2 = 3 nearest: 0 has the smallest sum
    assert res.flagged == (1, 2, 3, 4, 5, 6)


def test_centered_clipping_fixture_and_state() -> None:
    v0 = torch.tensor(REF["cc_centre"], dtype=torch.float64)
    rule = CenteredClipping(clip_radius=1.5, n_iterations=3)
    res = rule(X, None, make_ctx(D, state={"centre": v0}))
    torch.testing.assert_close(res.aggregate, _ref("centered_clipping"), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(res.state["centre"], res.aggregate)
    # Round 1: the centre is zero; one iteration = mean of the updates clipped to τ.
    one = CenteredClipping(clip_radius=1.0, n_iterations=1)(X, None, make_ctx(D))
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    torch.testing.assert_close(one.aggregate, (X * torch.clamp(1.0 / norms, max=1.0)).mean(0))


def test_fltrust_fixture_and_closed_form() -> None:
    g0 = torch.tensor(REF["reference_update"], dtype=torch.float64)
    res = FLTrust()(X, None, make_ctx(D, reference=g0))
    torch.testing.assert_close(res.aggregate, _ref("fltrust"), rtol=1e-9, atol=1e-9)
    # An update opposite to g0 gets trust 0 and is flagged.
    x = torch.stack([g0, 2 * g0, -g0])
    res = FLTrust()(x, None, make_ctx(D, reference=g0))
    torch.testing.assert_close(res.aggregate, g0)
    assert res.flagged == (2,)
    with pytest.raises(ConfigError, match="reference_update"):
        FLTrust()(X, None, make_ctx(D))


def test_foolsgold_matches_authors_code_and_keeps_history() -> None:
    h = torch.tensor(REF["histories"], dtype=torch.float64)
    alpha, _ = foolsgold_weights(h, confidence=1.0)
    torch.testing.assert_close(alpha, _ref("foolsgold_weights"), rtol=1e-9, atol=1e-9)
    assert float(alpha[0]) == 0.0 and float(alpha[1]) == 0.0  # the sybil pair
    rule = FoolsGold()
    first = rule(h[:, :3], None, make_ctx(3))
    second = rule(h[:, 3:], None, make_ctx(3, state=dict(first.state)))
    torch.testing.assert_close(second.state["history"][2], h[2, :3] + h[2, 3:])
    assert 0 in first.flagged and 1 in first.flagged


def test_geometric_median_against_scipy_minimizer() -> None:
    x = X[:7, :3]
    res = GeometricMedian(tolerance=1e-14, max_iterations=10_000)(x, None, make_ctx(3))
    pts = x.numpy()
    opt = minimize(
        lambda z: np.linalg.norm(pts - z, axis=1).sum(),
        pts.mean(0),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
    )
    np.testing.assert_allclose(res.aggregate.numpy(), opt.x, atol=1e-5)
    # On a line the geometric median is the 1-D median.
    line = torch.tensor([[0.0], [1.0], [2.0], [10.0], [30.0]], dtype=torch.float64)
    gm = GeometricMedian(tolerance=1e-14, max_iterations=10_000)(line, None, make_ctx(1))
    assert abs(float(gm.aggregate) - 2.0) < 1e-5


def test_median_even_n_is_mean_of_middle_values() -> None:
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [100.0, -5.0]])
    res = Median()(x, None, make_ctx(2))
    torch.testing.assert_close(res.aggregate, torch.tensor([3.0, 15.0]))
    torch.testing.assert_close(res.weights, torch.tensor([0.25, 0.5, 0.25, 0.0]))


def test_trimmed_mean_matches_scipy_live() -> None:
    for f in range(0, 5):
        res = TrimmedMean(n_byzantine=f)(X, None, make_ctx(D))
        expected = trim_mean(X.numpy(), f / X.shape[0], axis=0)
        np.testing.assert_allclose(res.aggregate.numpy(), expected, rtol=1e-12)


def test_norm_bound_closed_form() -> None:
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    res = NormBound(clip_norm=1.0)(x, None, make_ctx(2))
    torch.testing.assert_close(res.aggregate, torch.tensor([0.45, 0.6]))
    assert res.flagged == (0,)


def test_cge_and_mda_flag_the_outliers() -> None:
    for rule in (CGE(), MDA()):
        res = rule(X, None, make_ctx(D, n_byzantine=F))
        assert set(res.flagged) == {9, 10}


def test_nnm_and_arc_against_fixture() -> None:
    ctx = make_ctx(D, n_byzantine=F)
    torch.testing.assert_close(NNM()(X, ctx), _ref("nnm", "preaggregators"))
    torch.testing.assert_close(ARC()(X, ctx), _ref("arc", "preaggregators"))
    assert arc_clip_count(11, 2) == 3 and arc_clip_count(10, 0) == 0


def test_mda_refuses_exponential_cohorts() -> None:
    with pytest.raises(ConfigError, match="max_subsets"):
        MDA(max_subsets=100).check_cohort(30, 5)


def test_field_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="n_byzantine"):
        Krum(n_byzantine=-1)
    with pytest.raises(ConfigError, match="clip_radius"):
        CenteredClipping(clip_radius=0.0)
    with pytest.raises(ConfigError, match="n_selected"):
        MultiKrum(n_selected=0)
    with pytest.raises(ConfigError, match="smoothing"):
        GeometricMedian(smoothing=0.0)


def test_signguard_mean_shift_matches_scikit_learn_live() -> None:
    from sklearn.cluster import MeanShift
    from sklearn.cluster import estimate_bandwidth as sk_bandwidth

    from fedguard.defenses.robust.signguard import estimate_bandwidth, mean_shift_labels

    rng = np.random.default_rng(0)
    for _ in range(10):
        n = int(rng.integers(5, 40))
        pts = np.concatenate(
            [rng.normal(0, 0.05, size=(n, 3)), rng.normal(0.5, 0.05, size=(n // 3 + 1, 3))]
        )
        bandwidth = sk_bandwidth(pts, quantile=0.5)
        assert estimate_bandwidth(torch.from_numpy(pts), 0.5) == pytest.approx(bandwidth, 1e-12)
        expected = MeanShift(bandwidth=bandwidth).fit(pts).labels_
        mine = mean_shift_labels(torch.from_numpy(pts), bandwidth).numpy()
        np.testing.assert_array_equal(mine, expected)


def test_dnc_scores_equal_svd_projection() -> None:
    from fedguard.defenses.robust.dnc import dnc_outlier_scores

    centred = X - X.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    torch.testing.assert_close(dnc_outlier_scores(X, torch.arange(D)), (centred @ vh[0]) ** 2)


def test_trimmed_mean_with_ties_matches_sorted_definition() -> None:
    x = torch.tensor([[1.0], [1.0], [1.0], [1.0], [2.0]])
    res = TrimmedMean(n_byzantine=2)(x, None, make_ctx(1))
    assert float(res.aggregate) == 1.0
    ints = torch.randint(0, 3, (9, 200), generator=torch.Generator().manual_seed(0)).double()
    for f in range(0, 5):
        res = TrimmedMean(n_byzantine=f)(ints, None, make_ctx(200))
        expected = torch.sort(ints, dim=0).values[f : 9 - f].mean(0)
        torch.testing.assert_close(res.aggregate, expected)


def test_foolsgold_keys_history_by_client_id_when_the_context_has_ids() -> None:
    from dataclasses import dataclass

    from fedguard.types import AggregationContext

    @dataclass(frozen=True)
    class IdContext(AggregationContext):
        client_ids: tuple[int, ...] = ()

    def ctx(ids: tuple[int, ...], state: dict) -> IdContext:
        return IdContext(1, 0, torch.Generator(), torch.zeros(3), state, None, ids)

    h = torch.tensor(REF["histories"], dtype=torch.float64)[:, :3]
    first = FoolsGold()(h[:4], None, ctx((10, 11, 12, 13), {}))
    x = h[[2, 5, 0]].clone()
    x[1, 0] = float("nan")  # client 99 is faulty: ids must stay aligned with the clean rows
    second = FoolsGold()(x, None, ctx((12, 99, 10), dict(first.state)))
    hist = second.state["history"]
    torch.testing.assert_close(hist[12], 2 * h[2])
    torch.testing.assert_close(hist[10], 2 * h[0])
    torch.testing.assert_close(hist[11], h[1])
    assert 99 not in hist and 1 in second.flagged


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11])
def test_coordinate_median_matches_numpy_live(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    for x in (torch.randn(n, 300, generator=g), torch.randint(0, 3, (n, 300), generator=g)):
        x = x.double()
        res = Median()(x, None, make_ctx(300))
        np.testing.assert_allclose(res.aggregate.numpy(), np.median(x.numpy(), axis=0))
        assert res.weights is not None and abs(float(res.weights.sum()) - 1.0) < 1e-12
