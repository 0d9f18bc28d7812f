"""SecAggTransport / SecAggPlusTransport: the weighted sum, reproducibility, hooks and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedguard import registry
from fedguard.api import Transport
from fedguard.defenses.secure_aggregation.errors import (
    ProtocolAbort,
    ProtocolViolation,
    SecAggError,
)
from fedguard.defenses.secure_aggregation.noise import DiscreteGaussianNoise, SkellamNoise
from fedguard.defenses.secure_aggregation.transport import SecAggPlusTransport, SecAggTransport
from fedguard.errors import ConfigError, UserError
from fedguard.types import RoundContext


def _round(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, RoundContext]:
    g = torch.Generator().manual_seed(seed)
    updates = torch.randn(n, d, generator=g) * 0.5  # (n, d), a few coordinates beyond ±1
    weights = torch.randint(1, 60, (n,), generator=g).to(torch.float64)  # (n,)
    ctx = RoundContext(
        round=4,
        seed=seed,
        global_params=torch.zeros(d),
        sampled_ids=tuple(range(40, 40 + 2 * n, 2)),
        n_clients=500,
    )
    return updates, weights, ctx


def _survivor_rows(ctx: RoundContext, dropped: tuple[int, ...]) -> list[int]:
    return [row for row, cid in enumerate(ctx.sampled_ids) if cid not in dropped]


@pytest.mark.parametrize(
    "transport",
    [
        SecAggTransport(dropout_rate=0.25),
        SecAggPlusTransport(dropout_rate=0.1, neighbours=6, consistency_check=True),
        SecAggTransport(scale=2.0**8, clip_range=0.3, bits=20),
    ],
)
def test_weighted_sum_of_survivors_within_the_promised_error(transport: SecAggTransport) -> None:
    updates, weights, ctx = _round(16, 300)
    out = transport(updates, weights, ctx)
    assert out.updates is None and not type(transport).reveals_individual_updates
    rows = _survivor_rows(ctx, out.info["dropped_ids"])
    assert out.info["survivors"] == len(rows) and out.info["dropouts"] == 16 - len(rows)
    c = transport.clip_range
    exact = (weights[rows, None] * updates[rows].double().clamp(-c, c)).sum(0)
    err = (out.update_sum.double() - exact).abs().max().item()
    assert err <= out.info["max_decoding_error"] + 1e-4  # float32 output
    assert out.weight_sum == pytest.approx(float(weights[rows].sum()))
    assert out.update_sum.shape == (300,) and out.update_sum.dtype == updates.dtype
    assert out.info["wrap_probability"] == 0.0
    assert out.info["bytes_sent_per_client"] > 300 * 4  # at least the masked vector
    assert out.info["reconstructed_seeds"] == len(rows)


def test_same_round_context_gives_bit_identical_sums() -> None:
    updates, weights, ctx = _round(12, 100, seed=3)
    t = SecAggPlusTransport(dropout_rate=0.2, neighbours=4)
    a, b = t(updates, weights, ctx), t(updates, weights, ctx)
    assert torch.equal(a.update_sum, b.update_sum)
    assert a.info["dropped_ids"] == b.info["dropped_ids"]


def test_registered_under_its_entry_point_names() -> None:
    t = registry.create("transport", "secagg", dropout_rate=0.1)
    assert isinstance(t, SecAggTransport) and isinstance(t, Transport)
    assert registry.get("transport", "secagg_plus") is SecAggPlusTransport
    with pytest.raises(ConfigError, match="unknown parameter"):
        registry.create("transport", "secagg_plus", k=3)


def test_distributed_noise_is_reported_after_dropouts() -> None:
    updates, weights, ctx = _round(20, 4000, seed=1)
    weights = torch.ones(20, dtype=torch.float64)
    noise = SkellamNoise(mu=200.0)
    t = SecAggTransport(client_noise=noise, dropout_rate=0.2, scale=2.0**12)
    out = t(updates, weights, ctx)
    m = out.info["survivors"]
    assert out.info["noise_clients"] == m
    unit = 1.0 / 2.0**12
    assert out.info["noise_variance_per_coordinate"] == pytest.approx(m * 400.0 * unit**2)
    assert out.info["wrap_probability"] < 1e-9
    rows = _survivor_rows(ctx, out.info["dropped_ids"])
    residual = out.update_sum.double() - updates[rows].double().clamp(-1, 1).sum(0)
    # Stochastic rounding adds at most m/4 units² of variance; the sample variance of 4000
    # coordinates is within 10 % (≈ 4.5 standard errors) of the truth.
    var = residual.var().item()
    expected = out.info["noise_variance_per_coordinate"]
    assert abs(var - expected) <= 0.1 * expected + m / 4.0 * unit**2
    assert abs(residual.mean().item()) < 4 * (var / 4000) ** 0.5


def test_noise_hook_must_describe_its_tail() -> None:
    def bare(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x

    with pytest.raises(ConfigError, match="client_noise"):
        SecAggTransport(client_noise=bare)  # type: ignore[arg-type]
    SecAggTransport(client_noise=DiscreteGaussianNoise(sigma=3.0))


def test_too_many_dropouts_abort_the_round_cleanly() -> None:
    updates, weights, ctx = _round(10, 20)
    with pytest.raises(ProtocolAbort, match="threshold") as info:
        SecAggTransport(dropout_rate=0.9)(updates, weights, ctx)
    assert isinstance(info.value, UserError)


def test_bad_parameters_and_inputs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"threshold_fraction must be at least 0\.5"):
        SecAggTransport(threshold_fraction=0.3)
    SecAggTransport(threshold_fraction=0.3, allow_unsafe_threshold=True)
    with pytest.raises(ConfigError, match="clip_range"):
        SecAggTransport(clip_range=0.0)
    with pytest.raises(ConfigError, match="bits"):
        SecAggTransport(bits=70)
    with pytest.raises(ConfigError, match="neighbours"):
        SecAggPlusTransport(neighbours=0)
    with pytest.raises(ConfigError, match="even"):
        SecAggPlusTransport(neighbours=3).check_cohort(11, 0)
    SecAggPlusTransport(neighbours=3).check_cohort(12, 0)
    updates, weights, ctx = _round(6, 10)
    with pytest.raises(ProtocolViolation, match="length 10, but the model has 11"):
        SecAggTransport()(
            updates, weights, RoundContext(4, 0, torch.zeros(11), ctx.sampled_ids, 50)
        )
    with pytest.raises(ProtocolViolation, match="one row per sampled client"):
        SecAggTransport()(updates[:5], weights[:5], ctx)
    with pytest.raises(ProtocolViolation, match="weights"):
        SecAggTransport()(updates, -weights, ctx)
    with pytest.raises(SecAggError, match="bits=8 cannot hold"):
        SecAggTransport(bits=8)(updates, weights, ctx)


def test_secagg_plus_uses_a_regular_graph_and_per_neighbourhood_threshold() -> None:
    t = SecAggPlusTransport()
    assert t.degree(500) == 18 and t.threshold(500) == 10
    updates, weights, ctx = _round(30, 8)
    out = t(updates, weights, ctx)
    assert out.info["neighbourhood_size"] == 11 and out.info["threshold"] == 6
    full = SecAggTransport()(updates, weights, ctx)
    assert out.info["bytes_sent_per_client"] < full.info["bytes_sent_per_client"]
    assert np.isclose(out.update_sum.double(), full.update_sum.double(), atol=1e-3).all()


def test_built_from_a_run_config_and_feeds_a_sum_based_aggregator() -> None:
    from fedguard.components import instantiate
    from fedguard.config import ComponentSpec
    from fedguard.core.mean import Mean
    from fedguard.core.transport import PlainTransport

    spec = ComponentSpec(name="secagg_plus", params={"neighbours": 4, "clip_range": 2.0})
    t = instantiate("transport", spec, "defense.transport")
    assert isinstance(t, SecAggPlusTransport) and t.neighbours == 4
    with pytest.raises(ConfigError, match="threshold_fraction"):
        instantiate(
            "transport",
            ComponentSpec(name="secagg", params={"threshold_fraction": 0.2}),
            "defense.transport",
        )
    updates, weights, ctx = _round(9, 50)
    secure = t(updates, weights, ctx)
    plain = PlainTransport()(updates.clamp(-2, 2), weights, ctx)
    agg = Mean()
    diff = agg.from_sum(secure.update_sum, secure.weight_sum) - agg.from_sum(
        plain.update_sum, plain.weight_sum
    )
    assert diff.abs().max().item() <= secure.info["max_decoding_error"] / secure.weight_sum + 1e-6


def test_an_aborted_round_is_recorded_and_the_run_goes_on() -> None:
    from fedguard.config import parse_spec
    from fedguard.launch import execute

    spec = parse_spec(
        {
            "rounds": 2,
            "data": {"dataset": "digits", "partition": "iid"},
            "model": "logreg",
            "clients": {"n_clients": 6},
            "defense": {"transport": {"name": "secagg", "dropout_rate": 0.95}},
        }
    )
    result = execute(spec)
    assert len(result.records) == 2
    aborted = [r for r in result.records if "aborted" in r]
    # with 95% dropout this seed loses too many clients in both rounds
    assert len(aborted) == 2 and all("the round is aborted" in r["aborted"] for r in aborted)
    initial = result.simulation.initial_state().params
    sim = result.simulation
    assert result.records[-1]["test_accuracy"] == sim.model.evaluate(initial, *sim.test)[0]
