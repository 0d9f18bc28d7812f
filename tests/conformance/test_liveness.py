"""Liveness: no registered defense or attack can silently become a no-op.

Every component of the entry-point table is enumerated, so a new one is covered the day it is
registered. Each defense meets crafted inputs on which it must differ from the plain mean (or,
for a transform or transport, from passing its input through); each attack must differ from
what its clients would honestly send. A component that is identity *by design* is exempt only
through the explicit, justified lists below (a test checks that every exemption still exists).
(A defense in another framework was once found to run plain FedAvg for exactly this reason.)
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedguard import registry
from fedguard.api import AttackContext, FreeRiderContext, TransformContext
from fedguard.core.mean import Mean
from fedguard.types import AggregationContext, RoundContext

N, D, F = 12, 8, 2  # clients, dimension, tolerated Byzantine clients (bulyan: n ≥ 4f + 3)

# Identity by design, each with the reason (and where its behaviour is tested instead).
EXEMPT = {
    ("aggregator", "mean"): "the plain mean itself: the baseline every other rule is compared to",
    ("client_transform", "identity"): "the core's no-op default (no client transform)",
    ("client_transform", "dp_sgd"): (
        "replaces local training (per-sample clipping and noise inside training); its __call__ is "
        "never used. tests/dp/test_dp_sgd.py compares it with Opacus"
    ),
    ("client_transform", "uldp_avg"): (
        "replaces local training (per-user clipping and noise inside training); its __call__ is "
        "never used. tests/dp/test_user_level_dp.py checks its bounds and noise"
    ),
    ("server_transform", "identity"): "the core's no-op default (no server transform)",
    ("transport", "plain"): "the core's default: the server receives the updates as sent",
}


# Settings a component needs on crafted inputs outside a run (a run binds them itself).
PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("transport", "secagg_discrete_gaussian"): {"expected_clients": N},
    ("transport", "secagg_skellam"): {"expected_clients": N},
    ("server_transform", "bandmf"): {"rounds": 4},  # the strategy's horizon
    ("server_transform", "dp_ftrl_tree"): {"rounds": 4},
}


def build(kind: str, name: str) -> Any:
    return registry.create(kind, name, **PARAMS.get((kind, name), {}))


def components(kind: str) -> list[str]:
    return [n for n in registry.names(kind) if (kind, n) not in EXEMPT]


def crafted_updates() -> torch.Tensor:
    """(N, D): N − F honest rows near (1, …, 1) and F identical outliers at −20: the plain mean
    is dragged to about −2.4, every robust rule stays near the honest rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.ones(N, D, dtype=torch.float64) + 0.1 * torch.randn(
        N, D, generator=g, dtype=torch.float64
    )
    x[-F:] = -20.0
    return x


def aggregation_ctx(x: torch.Tensor) -> AggregationContext:
    return AggregationContext(
        round=1,
        n_byzantine=F,
        generator=torch.Generator().manual_seed(1),
        global_params=torch.zeros(D, dtype=x.dtype),
        reference_update=x[: N - F].mean(dim=0),  # FLTrust's root-dataset update: honest
        client_ids=tuple(range(N)),
    )


#: Stateful mechanisms whose noise correlates across rounds start at round 0 with empty state.
FIRST_ROUND = {("server_transform", "bandmf"), ("server_transform", "dp_ftrl_tree")}


def transform_ctx(x: torch.Tensor, state: Any = None, round_index: int = 1) -> TransformContext:
    rc = RoundContext(round_index, 0, torch.zeros(x.shape[-1], dtype=x.dtype), tuple(range(N)), N)
    return TransformContext(
        round=rc,
        client_ids=tuple(range(N)),
        state=state or {},
        sampling={"scheme": "all", "rate": 1.0, "expected_cohort": N, "population": N},
        aggregator=Mean(),
    )


def test_exemptions_name_registered_components() -> None:
    for kind, name in EXEMPT:
        assert name in registry.names(kind), (kind, name)


@pytest.mark.parametrize("name", components("aggregator"))
def test_aggregator_differs_from_the_plain_mean(name: str) -> None:
    x = crafted_updates()
    plain = x.mean(dim=0)
    out = build("aggregator", name)(x, None, aggregation_ctx(x)).aggregate
    assert torch.isfinite(out).all()
    assert torch.linalg.vector_norm(out - plain) > 0.1, f"{name} returned the plain mean"


@pytest.mark.parametrize("name", components("preaggregator"))
def test_preaggregator_changes_its_input(name: str) -> None:
    x = crafted_updates()
    out = build("preaggregator", name)(x, aggregation_ctx(x))
    assert out.shape[1] == D and torch.isfinite(out).all()
    assert out.shape != x.shape or not torch.allclose(out, x), f"{name} passed its input through"


@pytest.mark.parametrize("name", components("client_transform"))
def test_client_transform_changes_the_updates(name: str) -> None:
    x = crafted_updates()
    transform = build("client_transform", name)
    first = transform(x, transform_ctx(x))
    # stateful transforms (momentum) may pass the first round through: judge the second
    second = transform(0.5 * x, transform_ctx(x, first.state))
    assert torch.isfinite(second.values).all()
    assert not torch.allclose(second.values.to(x.dtype), 0.5 * x), f"{name} is a no-op"


@pytest.mark.parametrize("name", components("server_transform"))
def test_server_transform_changes_the_aggregate(name: str) -> None:
    x = crafted_updates()
    agg = x[: N - F].mean(dim=0)
    first = 0 if ("server_transform", name) in FIRST_ROUND else 1
    out = build("server_transform", name)(agg, transform_ctx(x, round_index=first)).values
    assert torch.isfinite(out).all()
    assert not torch.allclose(out.to(agg.dtype), agg), f"{name} is a no-op"


@pytest.mark.parametrize("name", components("transport"))
def test_transport_hides_updates_or_changes_the_sum(name: str) -> None:
    x = 0.05 * crafted_updates()  # inside every default clip range
    rc = RoundContext(1, 0, torch.zeros(D, dtype=x.dtype), tuple(range(N)), N)
    out = build("transport", name)(x, torch.ones(N, dtype=x.dtype), rc)
    hides = out.updates is None
    changes = not torch.allclose(out.update_sum.to(x.dtype), x.sum(dim=0))
    assert hides or changes, f"{name} delivers the individual updates unchanged"


def attack_ctx(honest: torch.Tensor, b: int) -> AttackContext:
    return AttackContext(
        round=1,
        n_malicious=b,
        n_clients=honest.shape[0] + b,
        generator=torch.Generator().manual_seed(2),
        global_params=torch.zeros(D, dtype=honest.dtype),
        own_updates=honest[:b].clone(),
        n_byzantine=b,
        aggregator=lambda u: u.mean(dim=0),
    )


@pytest.mark.parametrize("name", components("model_attack"))
def test_model_attack_differs_from_what_its_clients_would_send(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    honest = torch.ones(N - F, D, dtype=torch.float64) + 0.3 * torch.randn(
        N - F, D, generator=g, dtype=torch.float64
    )
    ctx = attack_ctx(honest, F)
    out = build("model_attack", name)(honest, ctx)
    assert out.shape == (F, D) and torch.isfinite(out).all()
    assert not torch.allclose(out.to(honest.dtype), ctx.own_updates), f"{name} sent honest updates"


@pytest.mark.parametrize("name", components("data_attack"))
def test_data_attack_poisons_the_data(name: str) -> None:
    g = torch.Generator().manual_seed(4)
    features = torch.rand(40, 64, generator=g)  # 8×8 digits-like images, flattened
    labels = torch.arange(40) % 10
    new_x, new_y = build("data_attack", name).poison(
        features.clone(), labels.clone(), 10, torch.Generator().manual_seed(5)
    )
    assert not (torch.equal(new_x, features) and torch.equal(new_y, labels)), f"{name} is a no-op"


@pytest.mark.parametrize("name", components("free_rider"))
def test_free_rider_does_not_send_an_honest_update(name: str) -> None:
    g = torch.Generator().manual_seed(6)
    honest = torch.ones(N - 1, D, dtype=torch.float64) + 0.1 * torch.randn(
        N - 1, D, generator=g, dtype=torch.float64
    )
    history = [0.5 * honest.mean(dim=0), 0.8 * honest.mean(dim=0)]  # earlier global deltas
    ctx = FreeRiderContext(
        round=2,
        global_params=torch.zeros(D, dtype=torch.float64),
        global_deltas=history,
        generator=torch.Generator().manual_seed(7),
        client_id=N - 1,
    )
    out = build("free_rider", name)(ctx)
    assert out.shape == (D,) and torch.isfinite(out).all()
    # an honest client of this round would send (about) the honest mean: the plain mean over
    # all N clients must move when the free-rider's update joins the honest ones
    with_rider = torch.cat([honest, out.to(honest.dtype)[None]]).mean(dim=0)
    assert not torch.allclose(with_rider, honest.mean(dim=0), atol=1e-3), (
        f"{name} sent an honest update"
    )
