"""The text attacks as observers of the core's simulation on the GPT and the bundled text data:
DAGER's done-when cases, and exposure / extraction / sequence membership end to end."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest

from fedguard.attacks.text.dager_attack import AGGREGATE
from fedguard.config import parse_spec
from fedguard.core.simulation import Simulation
from fedguard.launch import build_simulation


def run(
    attacks: list[Any],
    *,
    chars: int = 40,
    authors: int = 2,
    d_model: int = 64,
    transport: Any = "plain",
    adapter: str = "none",
    rank: int = 4,
    seed: int = 0,
    rounds: int = 1,
    algorithm: str = "fedsgd",
    window: int = 16,
    test_fraction: float = 0.1,
) -> tuple[Simulation, list[tuple[Any, Any]]]:
    spec = {
        "rounds": rounds,
        "seed": seed,
        "data": {
            "dataset": {
                "name": "text",
                "params": {
                    "n_authors": authors,
                    "chars_per_author": chars,
                    "window": window,
                    "secret_formats": {"pin": "my PIN is {d4}"},
                    "secrets_per_author": 1,
                    "repetitions": [1],
                },
            },
            "partition": "natural",
            "test_fraction": test_fraction,
        },
        "model": {
            "name": "gpt",
            "params": {
                "d_model": d_model,
                "n_layer": 2,
                "n_head": 2,
                "context": window,
                "adapter": adapter,
                "lora_rank": rank,
                "lora_targets": ["query", "key", "value"],
            },
        },
        "clients": {"n_clients": authors},
        "training": {"algorithm": algorithm, "learning_rate": 0.1, "batch_size": 8},
        "defense": {"transport": transport},
        "attack": {"privacy_attacks": attacks},
    }
    sim = build_simulation(parse_spec(spec))
    state = sim.initial_state()
    for _ in range(rounds):
        state, _ = sim.run_round(state)
    return sim, [(a, o) for _, a, o in sim.privacy_outputs if o is not None]


DAGER = {"name": "dager", "params": {"max_clients": 4}}


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_dager_recovers_every_token_and_sequence_of_fedsgd_full_fine_tuning(seed: int) -> None:
    sim, [(attack, output)] = run([DAGER], seed=seed)
    truth = sim.truth()
    for cid, result in output.results.items():
        tokens = sum(x.numel() for x in [truth.private_batches[cid][0]])
        assert tokens < 63  # below the dimension of LayerNorm outputs (d_model − 1)
        assert result.status == "recovered", result.reason
    metrics = attack.metrics(output, truth)
    assert metrics["failed"] == 0.0
    assert metrics["token_recovery"] == metrics["sequence_recovery"] == 1.0
    assert metrics["rouge1"] == metrics["rouge2"] == 1.0


def test_dager_reports_failure_at_or_above_the_bound() -> None:
    sim, [(attack, output)] = run([DAGER], chars=200)
    truth = sim.truth()
    assert all(truth.private_batches[c][0].numel() >= 64 for c in output.results)
    metrics = attack.metrics(output, truth)
    assert metrics["failed"] == 1.0 and metrics["token_recovery"] == 0.0
    assert "rank" in metrics["note"] and "cannot tell them apart" in metrics["note"]
    assert all(not r.sequences and not r.tokens_by_position for r in output.results.values())


def test_dager_under_secure_aggregation_gets_only_the_sum_and_says_so() -> None:
    fine = {"name": "secagg", "params": {"scale": 2.0**40}}
    sim, [(attack, output)] = run([DAGER], chars=34, authors=3, d_model=128, transport=fine)
    assert list(output.results) == [AGGREGATE] and output.from_aggregate
    metrics = attack.metrics(output, sim.truth())
    assert "union of 3 clients' sequences" in metrics["note"]
    # with a fine fixed-point encoding the union of every client's windows is recovered
    assert metrics["token_recovery"] == metrics["sequence_recovery"] == 1.0
    # the default encoding (2^20 units) rounds the update to a noise floor that fills the rank
    sim, [(attack, output)] = run([DAGER], chars=34, authors=3, d_model=128, transport="secagg")
    assert attack.metrics(output, sim.truth())["failed"] == 1.0


def test_dager_on_ffa_lora_recovers_while_tokens_stay_below_the_rank() -> None:
    sim, [(_, output)] = run([DAGER], adapter="ffa_lora", rank=32)
    truth = sim.truth()
    for cid, result in output.results.items():
        tokens = truth.private_batches[cid][0].numel()
        if tokens < 32:
            assert result.status == "recovered"
            assert set(result.sequences) == {
                tuple(r) for r in truth.private_batches[cid][0].long().tolist()
            }
        else:
            assert result.status == "failed"
    assert {truth.private_batches[c][0].numel() < 32 for c in output.results} == {True, False}


def test_memorization_attacks_end_to_end() -> None:
    attacks = [
        {"name": "canary_exposure", "params": {"formats": {"pin": "my PIN is {d4}"}}},
        {"name": "extraction", "params": {"formats": {"pin": "my PIN is {d4}"}, "n_samples": 4}},
        {"name": "sequence_membership", "params": {"n_candidates": 8, "reference_steps": 2}},
        {"name": "sequence_membership", "params": {"target": "client", "target_client": 0}},
    ]
    sim, outputs = run(
        attacks, chars=300, authors=3, algorithm="fedavg", rounds=2, window=24, test_fraction=0.5
    )
    truth = sim.truth()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few non-members: TPR caveats
        results = [(a.registry_name, a.metrics(o, truth)) for a, o in outputs]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, m in results:
        by_name.setdefault(name, []).append(m)
    pins = [s for s in truth.secrets if s.format == "pin" and s.client >= 0]
    exposure = by_name["canary_exposure"][0]
    assert exposure["n_secrets"] == len(pins) > 0
    assert 0.0 <= exposure["exposure_mean"] <= math.log2(10_000)
    extraction = by_name["extraction"][0]
    assert extraction["n_secrets"] == len(pins)
    assert 0 <= extraction["extracted_greedy"] <= extraction["extracted"] <= len(pins)
    for m in by_name["sequence_membership"]:
        for score in ("loss", "zlib", "lira"):
            assert 0.0 <= m[f"{score}.auc"] <= 1.0
            assert m[f"{score}.tpr_at_1pct_fpr_lower"] <= m[f"{score}.tpr_at_1pct_fpr"]


def test_client_membership_under_secure_aggregation_attacks_the_mean_model() -> None:
    """Regression: a client target under secure aggregation (no client's update visible) asked
    the candidate pool for a client's data without a client id and failed."""
    attack = {"name": "sequence_membership", "params": {"target": "client", "n_references": 0}}
    sim, [(mia, output)] = run(
        [attack],
        chars=300,
        authors=3,
        algorithm="fedavg",
        window=24,
        test_fraction=0.5,
        transport="secagg",
    )
    assert output.target.from_aggregate and output.target.client_id is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metrics = mia.metrics(output, sim.truth())
    assert metrics["from_aggregate"] == 1.0 and 0.0 <= metrics["loss.auc"] <= 1.0
