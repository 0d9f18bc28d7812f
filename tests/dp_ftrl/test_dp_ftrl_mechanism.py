"""The DP-FTRL server transforms: streamed noise equals B·Z, resume is bit for bit, one band is
DP-FedAvg's noise, and the run-level checks refuse what has no derived bound."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from defenses.dp.central_gaussian import CentralGaussian
from defenses.dp.kernels import gaussian_noise
from defenses.dp_ftrl.banded_factorization import bandmf_strategy
from defenses.dp_ftrl.bandmf import BandMF
from defenses.dp_ftrl.dp_ftrl_tree import DPFTRLTree
from defenses.dp_ftrl.matrix_mechanism import MatrixMechanism
from defenses.dp_ftrl.tree_factorization import prefix_workload, tree_factorization
from fedguard.api import TransformContext
from fedguard.components import build_components
from fedguard.config import parse_spec
from fedguard.core.sampling import sampling_description
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.matrix_events import MatrixGaussian
from fedguard.types import RoundContext

D = 6
POPULATION = 40


def context(t: int, state: Any, separation: int = 4, rate: float = 0.0, n: int = 3, seed: int = 5):
    sampling = sampling_description("min_separation", POPULATION, 0, rate, separation)
    ids = tuple(range(n))
    return TransformContext(
        RoundContext(t, seed, torch.zeros(D), ids, POPULATION), ids, state, sampling
    )


def run(
    mechanism: MatrixMechanism,
    rounds: int,
    aggregates: torch.Tensor,
    state: Any = None,
    start: int = 0,
    **kw: Any,
) -> tuple[list[torch.Tensor], list, Any]:
    outputs, events = [], []
    state = state or {}
    for t in range(start, rounds):
        out = mechanism(aggregates[t], context(t, state, **kw))
        outputs.append(out.values)
        events.append(out.events)
        state = out.state
    return outputs, events, state


def standard_normals(stream: str, t: int, count: int, seed: int = 5) -> torch.Tensor:
    generator = RoundContext(t, seed, torch.zeros(D), (), POPULATION).generator(stream)
    return gaussian_noise((count, D), 1.0, generator, torch.float64)


@pytest.mark.parametrize("estimator", ["plain", "honaker"])
def test_tree_noise_prefix_sums_are_the_decoder_times_node_noise(estimator: str) -> None:
    rounds, restart, z, clip = 11, 4, 1.5, 0.5
    mech = DPFTRLTree(z, clip, estimator=estimator, restart_every=restart, rounds=rounds)
    outputs, _, _ = run(mech, rounds, torch.zeros(rounds, D, dtype=torch.float64))
    expected_cohort = POPULATION / 4
    released = torch.stack(outputs) * expected_cohort  # (rounds, d): σ · D Z
    f = tree_factorization(rounds, restart, estimator)
    z_rows = torch.cat(
        [
            standard_normals("dp_ftrl_tree", t, int((f.release_round == t).sum()))
            for t in range(rounds)
        ]
    )  # nodes in release order
    expected = z * clip * torch.from_numpy(f.decoder) @ z_rows  # prefix sums carry σ·B·Z
    torch.testing.assert_close(torch.cumsum(released, 0), expected, rtol=1e-10, atol=1e-10)


def test_bandmf_noise_is_c_inverse_z_and_its_prefix_sums_b_z() -> None:
    rounds, bands, z, clip = 12, 3, 0.8, 2.0
    mech = BandMF(z, clip, bands=bands, rounds=rounds)
    outputs, _, state = run(mech, rounds, torch.zeros(rounds, D, dtype=torch.float64))
    noise = torch.stack(outputs) * (POPULATION / 4) / (z * clip)  # (rounds, d) = C⁻¹ Z
    z_rows = torch.cat([standard_normals("bandmf", t, 1) for t in range(rounds)])
    c = torch.from_numpy(bandmf_strategy(rounds, bands))
    torch.testing.assert_close(c @ noise, z_rows, rtol=1e-10, atol=1e-10)
    b = torch.from_numpy(prefix_workload(rounds)) @ torch.linalg.inv(c)
    torch.testing.assert_close(torch.cumsum(noise, 0), b @ z_rows, rtol=1e-9, atol=1e-9)
    assert state["recent_noise"].shape == (bands - 1, D)  # O(b·d) memory


@pytest.mark.parametrize(
    "mechanism",
    [BandMF(1.0, 1.0, bands=4, rounds=10), DPFTRLTree(1.0, 1.0, "honaker", 4, rounds=10)],
    ids=["bandmf", "tree"],
)
def test_resume_from_saved_state_is_bit_for_bit(mechanism: MatrixMechanism) -> None:
    aggregates = torch.randn(10, D, generator=torch.Generator().manual_seed(0))
    straight, _, _ = run(mechanism, 10, aggregates)
    first, _, state = run(mechanism, 6, aggregates)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)  # how state.pt is read back
    rest, _, _ = run(mechanism, 10, aggregates, state=restored, start=6)
    for a, b in zip(straight, first + rest, strict=True):
        assert torch.equal(a, b)


def test_a_state_from_another_round_is_refused() -> None:
    mech = BandMF(1.0, 1.0, bands=2, rounds=5)
    _, _, state = run(mech, 2, torch.zeros(5, D))
    with pytest.raises(ConfigError, match="state belongs to round 3"):
        mech(torch.zeros(D), context(3, state))
    with pytest.raises(ConfigError, match="built for 5 rounds"):
        mech(torch.zeros(D), context(5, {"next_round": 5}))


def test_one_band_adds_dp_fedavg_noise() -> None:
    # BandMF with one band: independent N(0, σ²) per round on the clipped sum, over the fixed
    # denominator — DP-FedAvg's release, with its own keyed stream
    z, clip, n = 1.2, 0.5, 3
    aggregate = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in range(3):
        ctx = context(t, {"next_round": t}, n=n)
        ours = BandMF(z, clip, bands=1, rounds=3)(aggregate, ctx)
        fedavg = CentralGaussian(z, clip)(aggregate, ctx)
        denominator = POPULATION / 4
        ours_noise = ours.values * denominator - aggregate * n
        fedavg_noise = fedavg.values * denominator - aggregate * n
        torch.testing.assert_close(ours_noise, z * clip * standard_normals("bandmf", t, 1)[0])
        ref = gaussian_noise((D,), z * clip, ctx.round.generator("central_gaussian"), torch.float64)
        torch.testing.assert_close(fedavg_noise, ref)
        assert ours.state["recent_noise"].shape == (0, D)  # nothing carried over


def test_events_follow_the_schedule() -> None:
    mech = BandMF(1.0, 0.5, bands=2, rounds=8)
    _, events, _ = run(mech, 8, torch.zeros(8, D), separation=2)
    assert all(len(e) == 1 and isinstance(e[0], MatrixGaussian) for e in events)
    _, amplified, _ = run(mech, 8, torch.zeros(8, D), separation=2, rate=0.5)
    assert [len(e) for e in amplified] == [1, 0, 1, 0, 1, 0, 1, 0]


def spec(server: dict[str, Any], **clients: Any) -> Any:
    return parse_spec(
        {
            "name": "ftrl",
            "rounds": 6,
            "model": {"name": "mlp", "hidden": [8]},
            "clients": {"n_clients": 12, "weighting": "uniform", **clients},
            "defense": {
                "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
                "server_transforms": [server],
            },
        }
    )


def test_components_bind_the_run_horizon() -> None:
    comps = build_components(spec({"name": "bandmf", "clip_norm": 0.5, "bands": 3}))
    assert comps.server_transforms[0].horizon() == 6


@pytest.mark.parametrize(
    ("server", "clients", "message"),
    [
        (
            {"name": "bandmf", "clip_norm": 0.5},
            {"sampling": "fixed", "cohort_size": 3},
            "fixed cohort",
        ),
        (
            {"name": "dp_ftrl_tree", "clip_norm": 0.5},
            {"sampling": "min_separation", "min_separation": 3, "sampling_rate": 0.5},
            "no amplification",
        ),
        (
            {"name": "bandmf", "clip_norm": 0.5, "bands": 4},
            {"sampling": "min_separation", "min_separation": 3, "sampling_rate": 0.5},
            "bands \\(4\\) <= clients.min_separation \\(3\\)",
        ),
        ({"name": "bandmf", "clip_norm": 0.5, "rounds": 4}, {}, "strategy must cover every round"),
        ({"name": "bandmf", "clip_norm": 0.4}, {}, "calibrated for clip_norm 0.4"),
    ],
)
def test_unsound_combinations_are_refused(server: dict, clients: dict, message: str) -> None:
    with pytest.raises(IncompatibleError, match=message):
        build_components(spec(server, **clients))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bands": 0}, "bands"),
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"rounds": -2}, "rounds"),
    ],
)
def test_bad_parameters_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        BandMF(**params)


def test_tree_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="estimator"):
        DPFTRLTree(estimator="optimal")
    with pytest.raises(ConfigError, match="restart_every"):
        DPFTRLTree(restart_every=-1)
    assert np.isclose(DPFTRLTree(2.0, 0.5).noise_multiplier, 2.0)
