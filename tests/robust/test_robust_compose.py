"""Pre-aggregators and their composition with aggregators."""

from __future__ import annotations

import pytest
import torch
from robust_testkit import honest_updates, make_ctx

from fedguard.api import PreAggregator
from fedguard.defenses.robust.arc import ARC
from fedguard.defenses.robust.bucketing import Bucketing
from fedguard.defenses.robust.clipping import Clipping
from fedguard.defenses.robust.compose import compose, split_name
from fedguard.defenses.robust.fltrust import FLTrust
from fedguard.defenses.robust.krum import Krum
from fedguard.defenses.robust.multi_krum import MultiKrum
from fedguard.defenses.robust.nnm import NNM
from fedguard.defenses.robust.trimmed_mean import TrimmedMean
from fedguard.errors import ConfigError
from fedguard.registry import build_composite as create_composite

N, D, F = 10, 8, 2


def test_nnm_then_trimmed_mean_equals_manual_application() -> None:
    x = honest_updates(N, D, dtype=torch.float64)
    ctx = make_ctx(D, n_byzantine=F)
    composed = compose([NNM()], TrimmedMean())
    res = composed(x, None, ctx)
    manual = TrimmedMean()(NNM()(x, ctx), None, ctx)
    torch.testing.assert_close(res.aggregate, manual.aggregate)
    # the registry names classes when it loads them; before that the class name stands in
    assert composed.rule_name in ("NNM+TrimmedMean", "nnm+trimmed_mean")
    from fedguard import registry

    registry.get("preaggregator", "nnm")
    registry.get("aggregator", "trimmed_mean")
    assert compose([NNM()], TrimmedMean()).rule_name == "nnm+trimmed_mean"


def test_weights_map_back_linearly_through_mixing() -> None:
    # Multi-Krum is a weighted mean of its rows, so Σ_j weights_j x_j must equal the aggregate.
    x = honest_updates(N, D, seed=3, dtype=torch.float64)
    x[0] *= 10
    for pre in ([NNM()], [Clipping(clip_norm=2.0)], [ARC(), NNM()]):
        res = compose(pre, MultiKrum())(x, None, make_ctx(D, n_byzantine=F))
        assert res.weights is not None
        torch.testing.assert_close(res.weights @ x, res.aggregate)


def test_bucketing_mixing_is_a_partition() -> None:
    x = honest_updates(7, D, dtype=torch.float64)
    mixed = Bucketing(bucket_size=3).mix(x, make_ctx(D, seed=5))
    assert mixed.values.shape == (3, D)
    assert torch.equal((mixed.mixing > 0).sum(0), torch.ones(7, dtype=torch.long))
    torch.testing.assert_close(mixed.mixing.sum(1), torch.ones(3, dtype=torch.float64))
    assert sorted((mixed.mixing > 0).sum(1).tolist()) == [1, 3, 3]
    again = Bucketing(bucket_size=3).mix(x, make_ctx(D, seed=5))
    assert torch.equal(mixed.values, again.values)


def test_bucketing_flags_map_to_every_member_of_a_dropped_bucket() -> None:
    x = honest_updates(12, D, seed=1, dtype=torch.float64)
    x[3] += 100.0  # one huge outlier → its bucket is Krum-rejected
    res = compose([Bucketing(bucket_size=2)], Krum())(x, None, make_ctx(D, n_byzantine=1))
    assert 3 in res.flagged
    # The outlier and its bucket mate share the bucket's (largest) Krum score.
    assert res.scores is not None and float(res.scores[3]) == float(res.scores.max())
    mixing = Bucketing(bucket_size=2).mix(x, make_ctx(D, n_byzantine=1)).mixing
    mates = (mixing[mixing[:, 3] > 0] > 0).nonzero()[:, 1].tolist()
    assert len(mates) == 2 and set(mates) <= set(res.flagged)
    assert torch.equal(res.scores[mates[0]], res.scores[mates[1]])


def test_cohort_bound_checked_after_bucketing() -> None:
    composed = compose([Bucketing(bucket_size=2)], Krum())
    composed.check_cohort(10, 1)  # 5 buckets > 2·1 + 2
    with pytest.raises(ConfigError, match=r"n > 2f \+ 2"):
        composed.check_cohort(10, 2)  # 5 buckets, Krum needs 7


def test_composite_handles_faulty_rows() -> None:
    x = honest_updates(N, D, seed=2)
    x[4, 0] = float("nan")
    res = compose([NNM()], TrimmedMean())(x, None, make_ctx(D, n_byzantine=F))
    assert bool(torch.isfinite(res.aggregate).all())
    assert 4 in res.flagged and float(res.scores[4]) == float("inf")


def test_composite_through_registry_and_reference_flag() -> None:
    agg = create_composite("nnm+bucketing+trimmed_mean", {"bucketing": {"bucket_size": 2}})
    x = honest_updates(N, D)
    res = agg(x, None, make_ctx(D, n_byzantine=1))
    assert res.aggregate.shape == (D,)
    assert compose([NNM()], FLTrust()).needs_reference_update
    assert not compose([NNM()], Krum()).needs_reference_update
    assert compose([], Krum()) == Krum()
    assert split_name("nnm+krum") == (["nnm"], "krum")
    with pytest.raises(ConfigError, match="joined by"):
        split_name("nnm++krum")


def test_third_party_preaggregator_without_mixing() -> None:
    class Halve(PreAggregator):
        def __call__(self, updates: torch.Tensor, ctx: object) -> torch.Tensor:
            return updates[: updates.shape[0] // 2 + 1]

    x = honest_updates(N, D)
    res = compose([Halve()], TrimmedMean())(x, None, make_ctx(D, n_byzantine=1))
    assert res.weights is None and res.flagged == ()
    assert res.scores is not None and res.scores.shape == (N,)


def test_clipping_and_arc_bound_norms() -> None:
    x = honest_updates(N, D, seed=9, dtype=torch.float64) * torch.arange(1, N + 1)[:, None]
    clipped = Clipping(clip_norm=1.5)(x, make_ctx(D))
    assert float(torch.linalg.vector_norm(clipped, dim=1).max()) <= 1.5 + 1e-12
    arc = ARC()(x, make_ctx(D, n_byzantine=F))
    norms = torch.linalg.vector_norm(x, dim=1)
    k = (2 * F * (N - F)) // N
    threshold = torch.sort(norms, descending=True).values[k]
    torch.testing.assert_close(torch.linalg.vector_norm(arc, dim=1), norms.clamp(max=threshold))
    with pytest.raises(ConfigError, match="bucket_size"):
        Bucketing(bucket_size=0)
