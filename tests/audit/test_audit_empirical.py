"""The empirical audit of a run: canary clients in the core's round loop, on a DP-FedAvg stand-in.

The DP mechanism here is a minimal test double of DP-FedAvg (clip each client update to
``clip_norm``; release ``(Σ clipped + N(0, (z·clip_norm)² I)) / W`` with the public expected cohort
``W``), so the true ε of one round is exactly the Gaussian mechanism's: dp-accounting's
``get_epsilon_gaussian(z, δ)`` is the oracle upper bound. ``claimed_noise_multiplier`` models a
broken mechanism whose ledger says σ while the noise is off.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dp_accounting
import pytest
import torch
from torch import Tensor

from fedguard.api import ClientTransform, ServerTransform, TransformContext, TransformOutput
from fedguard.audit.canary_clients import canary_trainer, install_canaries
from fedguard.audit.empirical import empirical_audit
from fedguard.components import Components, build_components
from fedguard.config import RunSpec, parse_spec
from fedguard.core.local_training import train_vectorized
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation, execute
from fedguard.privacy.audit.summary import describe_empirical_audit
from fedguard.privacy.events import Gaussian

DELTA = 1e-5


@dataclass(frozen=True)
class ClipForTest(ClientTransform):
    clip_norm: float = 0.5

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        norms = torch.linalg.vector_norm(updates, dim=1, keepdim=True)  # (n, 1)
        return TransformOutput(
            updates * torch.clamp(self.clip_norm / norms.clamp_min(1e-12), max=1)
        )


@dataclass(frozen=True)
class CentralNoiseForTest(ServerTransform):
    """DP-FedAvg's server step on the uniform mean: ``(Σ clipped + N(0, (z·C)² I)) / W``.

    ``W`` is the public expected cohort the mechanism is told (fixed denominator).
    """

    clip_norm: float = 0.5
    noise_multiplier: float = 2.0
    claimed_noise_multiplier: float = 2.0

    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        total = aggregate * len(ctx.client_ids)  # the Mean aggregator's sum (uniform weights)
        noise = torch.randn(aggregate.shape, generator=ctx.round.generator("test_noise"))
        released = (total + self.noise_multiplier * self.clip_norm * noise) / ctx.sampling[
            "expected_cohort"
        ]
        event = Gaussian(self.claimed_noise_multiplier, self.clip_norm)
        return TransformOutput(released, events=(event,))


def gaussian_upper_bound(ledger: dict[str, Any], delta: float) -> float:
    """Composition of the ledger's Gaussian rounds (μ² adds up), converted with dp-accounting."""
    multipliers = [e["noise_multiplier"] for r in ledger["rounds"] for e in r["population"]]
    mu = math.sqrt(sum(1 / z**2 for z in multipliers))
    return float(dp_accounting.get_epsilon_gaussian(1 / mu, delta))


def make_spec(seed: int = 0, rounds: int = 1, **clients: Any) -> RunSpec:
    return parse_spec(
        {
            "name": "audit-test",
            "seed": seed,
            "rounds": rounds,
            "eval_every": rounds,
            "model": {"name": "mlp", "hidden": [128]},
            "clients": {"n_clients": 20, "weighting": "uniform", **clients},
            "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
        }
    )


def dp_components(spec: RunSpec, actual: float, claimed: float = 2.0) -> Components:
    return replace(
        build_components(spec),
        client_transforms=(ClipForTest(),),
        server_transforms=(CentralNoiseForTest(0.5, actual, claimed),),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_correct_dp_fedavg_stays_below_the_accountant(seed: int) -> None:
    spec = make_spec(seed)
    result = empirical_audit(
        spec, 500, components=dp_components(spec, 2.0), upper_bound=gaussian_upper_bound
    )
    assert result["epsilon_upper"] == pytest.approx(1.993, abs=1e-3)
    assert 0.0 <= result["epsilon_lower"] < result["epsilon_upper"]
    assert result["lower_exceeds_upper"] is False
    assert result["canary_norm"] == 0.5  # taken from the client clip norm
    assert result["kind"] == "lower_bound" and result["estimate"]["kind"] == "estimate"


def test_broken_mechanism_is_caught_against_the_fedguard_accountants() -> None:
    spec = make_spec(0)
    result = empirical_audit(spec, 200, components=dp_components(spec, actual=0.0))
    # The ledger claims σ = 2 for one round: one unsampled Gaussian, so RDP and PLD both answer
    # with the exact ε ≈ 1.99 (the RDP conversion alone would give 2.17);
    # 200 canaries certify at most ≈ 3.5 with the 16-point guess grid.
    per = result["upper_by_accountant"]
    assert per["pld"] == pytest.approx(
        gaussian_upper_bound({"rounds": [{"population": [{"noise_multiplier": 2.0}]}]}, DELTA),
        abs=1e-3,
    )
    assert per["rdp"] == pytest.approx(per["pld"], rel=1e-9)
    assert result["epsilon_upper"] == min(per.values())
    assert max(per.values()) < result["epsilon_lower"] <= result["ceiling"]
    assert result["lower_exceeds_upper"] is True
    assert result["ceiling"] < result["ceiling_all_guesses"] < 5.8


def test_without_dp_the_canaries_are_obvious() -> None:
    result = empirical_audit(make_spec(0), 200)
    assert result["epsilon_upper"] == math.inf
    assert result["ratio"] is None
    assert result["epsilon_lower"] > 3.0
    assert result["guesses"]["n_correct"] == result["guesses"]["n_guesses"]
    assert result["canary_norm"] == 1.0


def test_largest_cosine_over_rounds(tmp_path: Path) -> None:
    spec = make_spec(0, rounds=2)
    result = empirical_audit(spec, 100, statistic="rounds", out=tmp_path)
    assert result["statistic"] == "rounds" and result["rounds"] == 2
    assert result["estimate"]["details"]["null"] == "fitted"
    assert result["epsilon_lower"] > 1.0


def test_audit_of_a_run_directory_writes_truth_owner_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    spec = make_spec(3)
    execute(spec, out=run_dir)
    result = empirical_audit(run_dir, 100, out=tmp_path / "audit")
    assert result["spec_hash"] == spec.spec_hash()
    assert result["audited_run_seconds"] > 0 and result["cost_ratio"] > 0
    truth = json.loads((tmp_path / "audit" / "canary_truth.json").read_text())
    assert len(truth["included"]) == result["n_included"]
    mode = stat.S_IMODE(os.stat(tmp_path / "audit" / "canary_truth.json").st_mode)
    assert mode == 0o600
    written = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert written["epsilon_upper"] == "inf"
    assert written["epsilon_lower"] == result["epsilon_lower"]
    assert result["rounds"] == 1
    again = empirical_audit(run_dir, 100, out=tmp_path / "again")  # same seed: bit-for-bit
    truth_again = json.loads((tmp_path / "again" / "canary_truth.json").read_text())
    assert (
        truth_again["scores"] == truth["scores"]
        and again["epsilon_lower"] == result["epsilon_lower"]
    )


def test_canary_rows_replace_training_and_real_rows_are_untouched() -> None:
    sim = build_simulation(make_spec(0))
    params = sim.initial_state().params
    updates = torch.randn(3, params.numel(), generator=torch.Generator().manual_seed(0))
    trainer = canary_trainer(train_vectorized, 20, updates)
    out = trainer(sim.model, params, sim.clients, [4, 21, 0, 20, 7], sim.local, 0, 0)
    reference = train_vectorized(sim.model, params, sim.clients, [4, 0, 7], sim.local, 0, 0)
    assert torch.equal(out[[0, 2, 4]], reference)
    assert torch.equal(out[1], updates[1]) and torch.equal(out[3], updates[0])


def test_canary_trainer_follows_per_client_starting_points() -> None:
    """The trainers take ``(n, d)`` per-client starts (a broadcast or payload stage): real rows
    train from their own row; the old wrapper sized its output by ``numel()`` and passed every
    row to the base trainer."""
    sim = build_simulation(make_spec(0))
    params = sim.initial_state().params
    updates = torch.randn(2, params.numel(), generator=torch.Generator().manual_seed(0))
    starts = torch.stack([params, params + 0.1, params - 0.1])
    trainer = canary_trainer(train_vectorized, 20, updates)
    out = trainer(sim.model, starts, sim.clients, [4, 21, 7], sim.local, 0, 0)
    reference = train_vectorized(sim.model, starts[[0, 2]], sim.clients, [4, 7], sim.local, 0, 0)
    assert out.shape == (3, params.numel())
    assert torch.equal(out[[0, 2]], reference) and torch.equal(out[1], updates[1])


def test_install_canaries_grows_the_population_and_keeps_the_rate() -> None:
    sim = build_simulation(make_spec(0, sampling="fixed", cohort_size=10))
    counts = sim.clients.counts.clone()
    ids = install_canaries(sim, torch.zeros(20, sim.initial_state().params.numel()))
    assert ids == tuple(range(20, 40))
    assert sim.spec.clients.n_clients == 40 and sim.spec.clients.cohort_size == 20
    assert sim.sampling["rate"] == 0.5 and sim.sampling["population"] == 40
    assert torch.equal(sim.clients.counts[:20], counts)
    assert bool((sim.clients.counts[20:] == round(float(counts.double().mean()))).all())


def test_mechanisms_are_told_a_population_that_does_not_depend_on_inclusion() -> None:
    sim = build_simulation(make_spec(0, sampling="poisson", sampling_rate=0.5))
    install_canaries(sim, torch.zeros(7, sim.initial_state().params.numel()), 20 + 30)
    assert sim.spec.clients.n_clients == 27
    assert sim.sampling["population"] == 50 and sim.sampling["expected_cohort"] == 25.0


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_canaries"):
        empirical_audit(make_spec(), 5)
    with pytest.raises(ConfigError, match="delta"):
        empirical_audit(make_spec(), 1000, delta=1e-3)
    with pytest.raises(ConfigError, match="statistic"):
        empirical_audit(make_spec(), 100, statistic="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="neither a run directory"):
        empirical_audit(tmp_path / "missing", 100)


def test_summary_states_a_contradiction_and_the_ceiling() -> None:
    base: dict[str, Any] = {
        "method": "one_run",
        "epsilon_lower": 3.2,
        "confidence": 0.95,
        "delta": 1e-5,
        "n_canaries": 200,
        "n_included": 103,
        "ceiling": 3.5,
        "epsilon_upper": 1.99,
        "upper_source": "smallest of the accountants' bounds (pld)",
        "upper_by_accountant": {"pld": 1.99, "rdp": 2.17},
        "ratio": 3.2 / 1.99,
        "lower_exceeds_upper": True,
        "estimate": {"epsilon": 40.0},
        "audit_seconds": 1.5,
        "cost_ratio": 1.2,
    }
    text = describe_empirical_audit(base)
    assert "CONTRADICTION" in text and "95% confidence" in text and "rdp 2.170" in text
    assert "not a bound" in text and "1.20× the audited run" in text
    fine = {**base, "epsilon_lower": 0.3, "ratio": 0.3 / 1.99, "lower_exceeds_upper": False}
    assert "CONTRADICTION" not in describe_empirical_audit(fine)
    high_claim = {**fine, "epsilon_upper": 8.0, "upper_by_accountant": {}}
    assert "cannot be detected" in describe_empirical_audit(high_claim)
    no_dp = {**fine, "epsilon_upper": math.inf, "ratio": None, "cost_ratio": None}
    assert "upper bound: ∞" in describe_empirical_audit(no_dp)
