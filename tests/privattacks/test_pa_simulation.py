"""Privacy attacks as observers of the core's federated simulation (plumbing, not strength)."""

from __future__ import annotations

import math
import warnings

import torch

from fedguard.config import parse_spec
from fedguard.core.simulation import Simulation
from fedguard.launch import build_simulation


def _run(spec_dict: dict) -> Simulation:
    sim = build_simulation(parse_spec(spec_dict))
    state = sim.initial_state()
    for _ in range(sim.spec.rounds):
        state, _ = sim.run_round(state)
    return sim


def test_inversion_attacks_observe_a_fedsgd_round() -> None:
    sim = _run(
        {
            "rounds": 2,
            "clients": {"n_clients": 300},
            "training": {"algorithm": "fedsgd", "learning_rate": 0.1},
            "attack": {
                "privacy_attacks": [
                    "analytic",
                    "label_recovery",
                    {"name": "inverting_gradients", "params": {"iterations": 100}},
                ]
            },
        }
    )
    truth = sim.truth()
    seen = {}
    for round_index, attack, output in sim.privacy_outputs:
        if round_index == 1:
            assert output is None  # at_round defaults to the first round
            continue
        rec = output.reconstructions[0]
        n_true = truth.private_batches[rec.client_id][0].shape[0]
        assert rec.labels.shape == (n_true,)  # FedSGD: the whole local dataset is one batch
        seen[attack.registry_name] = attack.metrics(output, truth)
    assert set(seen) == {"analytic", "label_recovery", "inverting_gradients"}
    assert seen["label_recovery"]["label_accuracy"] == 1.0
    assert seen["analytic"]["label_accuracy"] == 1.0
    assert math.isfinite(seen["inverting_gradients"]["psnr_db"])
    assert 0.0 <= seen["inverting_gradients"]["ssim"] <= 1.0


def test_membership_attacks_observe_the_last_round() -> None:
    sim = _run(
        {
            "rounds": 2,
            "clients": {"n_clients": 10},
            "training": {"local_epochs": 2, "learning_rate": 0.1},
            "attack": {
                "privacy_attacks": [
                    {"name": "loss_threshold", "params": {"n_candidates": 100}},
                    {"name": "lira", "params": {"n_shadows": 4, "n_candidates": 100}},
                    {"name": "rmia", "params": {"target": "client", "n_references": 4}},
                ]
            },
        }
    )
    truth = sim.truth()
    outputs = {(r, a.registry_name): (a, o) for r, a, o in sim.privacy_outputs}
    assert all(o is None for (r, _), (_, o) in outputs.items() if r == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name in ("loss_threshold", "lira"):
            attack, output = outputs[(1, name)]
            m = attack.metrics(output, truth)
            assert m["n_members"] == 50 and m["n_nonmembers"] == 50
            assert 0.0 <= m["auc"] <= 1.0
        attack, output = outputs[(1, "rmia")]
        m = attack.metrics(output, truth)
    client = output.client_id
    assert m["n_members"] == truth.private_batches[client][0].shape[0]
    assert torch.isfinite(output.scores).all()


def test_secure_aggregation_leaves_only_the_aggregate() -> None:
    sim = _run(
        {
            "rounds": 1,
            "clients": {"n_clients": 8},
            "training": {"algorithm": "fedsgd", "learning_rate": 0.1},
            "defense": {"transport": "secagg"},
            "attack": {
                "privacy_attacks": [{"name": "inverting_gradients", "params": {"iterations": 5}}]
            },
        }
    )
    (_, attack, output), *_ = sim.privacy_outputs
    assert output.from_aggregate and output.n_clients_in_aggregate == 8
    m = attack.metrics(output, sim.truth())
    assert m["from_aggregate"] == 1.0
    assert m["n_reconstructed"] == sum(b[0].shape[0] for b in sim.truth().private_batches.values())
