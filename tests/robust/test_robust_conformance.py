"""Conformance suite run over every robust aggregator of the entry-point table."""

from __future__ import annotations

import pytest
import torch
from robust_testkit import RULE_IDS, RULES, RuleCase, honest_updates, make_ctx, reference_mean

from fedguard import registry
from fedguard.errors import ConfigError

N, D, F = 12, 20, 2


def _ctx(case: RuleCase, x: torch.Tensor, f: int = F, seed: int = 0, **kw):
    ref = x.double().mean(dim=0).to(x.dtype) if case.name == "fltrust" else None
    return make_ctx(x.shape[1], n_byzantine=f, seed=seed, reference=ref, **kw)


def test_every_registered_robust_aggregator_is_covered() -> None:
    registered = set(registry.names("aggregator"))
    assert set(RULE_IDS) == registered - {"mean", "dp_brem_cc"}
    for case in RULES:
        assert registry.get("aggregator", case.name).__name__ == case.path.split(":")[1]


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_kept(case: RuleCase, dtype: torch.dtype) -> None:
    x = honest_updates(N, D, dtype=dtype)
    res = case.build()(x, None, _ctx(case, x))
    assert res.aggregate.shape == (D,)
    assert res.aggregate.dtype == dtype
    assert bool(torch.isfinite(res.aggregate).all())
    assert res.scores is not None and res.scores.shape == (N,)
    if res.weights is not None:
        assert res.weights.shape == (N,)
        assert bool((res.weights >= 0).all())


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_permutation_invariance(case: RuleCase) -> None:
    x = honest_updates(N, D, seed=1, dtype=torch.float64)
    x[-2:] *= 4.0  # two outliers so that selections are non-trivial
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(7))
    rule = case.build()
    a = rule(x, None, _ctx(case, x))
    b = rule(x[perm], None, _ctx(case, x[perm]))
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-9, atol=1e-9)
    assert a.scores is not None and b.scores is not None
    torch.testing.assert_close(a.scores[perm], b.scores, rtol=1e-6, atol=1e-9)
    if a.weights is not None:
        assert b.weights is not None
        torch.testing.assert_close(a.weights[perm], b.weights, rtol=1e-6, atol=1e-9)
    inverse = torch.argsort(perm)
    assert sorted(int(inverse[i]) for i in a.flagged) == sorted(b.flagged)


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_identical_inputs(case: RuleCase) -> None:
    v = torch.randn(D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    if case.identical == "sign":
        v = 0.1 * torch.sign(v)  # the vote returns s·sign(v), s = mean |v|
    v = 0.5 * v / torch.linalg.vector_norm(v)  # inside every default clipping radius
    x = v[None, :].repeat(N, 1)
    res = case.build()(x, None, _ctx(case, x))
    expected = torch.zeros(D, dtype=x.dtype) if case.identical == "zero" else v
    torch.testing.assert_close(res.aggregate, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", [r for r in RULES if r.mean_at_f0], ids=lambda r: r.name)
def test_plain_mean_recovered_when_no_byzantine(case: RuleCase) -> None:
    x = honest_updates(N, D, seed=2, dtype=torch.float64)
    res = case.build()(x, None, _ctx(case, x, f=0))
    torch.testing.assert_close(res.aggregate, reference_mean(x), rtol=1e-9, atol=1e-9)
    assert res.flagged == () or case.name == "norm_bound"


@pytest.mark.parametrize("case", [r for r in RULES if r.mean_at_f0], ids=lambda r: r.name)
def test_weighted_mean_or_documented_unweighted(case: RuleCase) -> None:
    # Rules averaging a selected subset use client weights; order-statistic rules ignore them.
    x = honest_updates(N, D, seed=2, dtype=torch.float64)
    w = torch.arange(1, N + 1, dtype=torch.float64)
    res = case.build()(x, w, _ctx(case, x, f=0))
    uses_weights = case.name in {
        "multi_krum",
        "mda",
        "cge",
        "dnc",
        "norm_bound",
        "centered_clipping",
    }
    expected = reference_mean(x, w) if uses_weights else reference_mean(x)
    torch.testing.assert_close(res.aggregate, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_deterministic_under_seed(case: RuleCase) -> None:
    x = honest_updates(N, D, seed=4)
    rule = case.build()
    a = rule(x, None, _ctx(case, x, seed=11))
    b = rule(x, None, _ctx(case, x, seed=11))
    assert torch.equal(a.aggregate, b.aggregate)
    assert a.flagged == b.flagged


@pytest.mark.parametrize("case", [r for r in RULES if r.uses_f], ids=lambda r: r.name)
def test_clear_error_when_cohort_too_small(case: RuleCase) -> None:
    rule = case.build()
    need = rule.min_clients(F)
    x = honest_updates(need - 1, D)
    with pytest.raises(ConfigError, match=r"got n = \d+, f = 2"):
        rule(x, None, _ctx(case, x))
    with pytest.raises(ConfigError, match=case.name):
        rule.check_cohort(need - 1, F)
    rule.check_cohort(need, F)
    # The rule's own n_byzantine field overrides the run's.
    case.build(n_byzantine=0).check_cohort(need - 1, F)


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_bad_shapes_are_config_errors(case: RuleCase) -> None:
    rule = case.build()
    x = honest_updates(N, D)
    with pytest.raises(ConfigError, match="global model has"):
        rule(x, None, make_ctx(D + 1, n_byzantine=F, reference=x.mean(0)))
    with pytest.raises(ConfigError, match="at least one client"):
        rule(x[:0], None, _ctx(case, x))
    with pytest.raises(ConfigError, match="weights"):
        rule(x, torch.ones(N - 1), _ctx(case, x))


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_nan_and_inf_rows_are_flagged_not_fatal(case: RuleCase) -> None:
    x = honest_updates(N, D, seed=5)
    x[2, 3] = float("nan")
    x[7] = float("inf")
    res = case.build()(x, None, _ctx(case, x[[i for i in range(N) if i not in (2, 7)]]))
    assert bool(torch.isfinite(res.aggregate).all())
    assert {2, 7} <= set(res.flagged)
    assert res.scores is not None and bool(torch.isinf(res.scores[[2, 7]]).all())
    if res.weights is not None:
        assert float(res.weights[2]) == 0.0 and float(res.weights[7]) == 0.0
    # Same result as aggregating the finite rows with f reduced by the two faulty clients.
    clean = x[[i for i in range(N) if i not in (2, 7)]]
    ref = case.build()(clean, None, _ctx(case, clean, f=0))
    torch.testing.assert_close(res.aggregate, ref.aggregate)


@pytest.mark.parametrize("case", RULES, ids=RULE_IDS)
def test_all_rows_faulty_gives_zero(case: RuleCase) -> None:
    x = torch.full((N, D), float("nan"))
    res = case.build()(x, None, make_ctx(D, n_byzantine=F, reference=torch.ones(D)))
    assert torch.equal(res.aggregate, torch.zeros(D))
    assert res.flagged == tuple(range(N))


MY_KINDS = {
    "aggregator": RULE_IDS,
    "preaggregator": ["nnm", "bucketing", "clipping", "arc"],
    "client_transform": ["momentum", "partial_sharing"],
    "model_attack": [
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
    ],
    "data_attack": ["label_flip", "backdoor"],
    "free_rider": ["zero", "noise", "disguised", "delta_replay"],
}


@pytest.mark.parametrize(
    ("kind", "name"), [(k, n) for k, names in MY_KINDS.items() for n in names], ids=str
)
def test_component_is_a_cited_frozen_dataclass(kind: str, name: str) -> None:
    import dataclasses

    cls = registry.get(kind, name)
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "References" in (cls.__doc__ or "")
    obj = registry.create(kind, name)
    assert hash(obj) == hash(registry.create(kind, name))
