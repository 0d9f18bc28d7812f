"""End-to-end on digits: 20 clients, 4 malicious, MLP 64-32-10 (the issue's scenario).

Fixed parameters, stated once: seed 0, 20 rounds (10 for free-riders), every client in every round,
FedAvg with 2 local epochs, batch 16, lr 0.1, server SGD lr 1. Two partitions:

* IID — ``ipm`` (ε = 10 > (n − f)/f = 4) and ``sign_flip`` (magnitude 4) wreck ``mean``;
  ``nnm+trimmed_mean``, and ``centered_clipping`` (τ = 0.1, 3 iterations) with client momentum
  (β = 0.5, exponential), keep at least 90 % of the clean accuracy of ``mean``.
* Dirichlet(α = 0.5) label skew — ``ipm`` (ε = 0.1) and ``alie`` each cost a robust rule
  (``median`` or ``trimmed_mean``) at least 5 accuracy points against its own clean run.

Free-riders (3 of 20, IID, 10 rounds): ``zero`` and ``disguised`` are flagged by ``signguard``
(TPR ≥ 0.9, FPR ≤ 0.1 over rounds, detected in round 1) and ranked by ``fltrust``'s scores
(mean AUROC ≥ 0.95).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
import torch

from fedguard.config import parse_spec
from fedguard.launch import build_simulation
from fedguard.metrics.detection import detection_summary, first_detection_round

IID: dict[str, Any] = {"name": "iid"}
SKEWED: dict[str, Any] = {"name": "dirichlet", "alpha": 0.5}
IPM_LARGE = {"n_malicious": 4, "model_attack": {"name": "ipm", "epsilon": 10.0}}
SIGN_FLIP = {"n_malicious": 4, "model_attack": {"name": "sign_flip", "magnitude": 4.0}}
IPM_SMALL = {"n_malicious": 4, "model_attack": {"name": "ipm", "epsilon": 0.1}}
ALIE = {"n_malicious": 4, "model_attack": "alie"}
CC_MOMENTUM = {
    "aggregator": {"name": "centered_clipping", "clip_radius": 0.1, "n_iterations": 3},
    "client_transforms": [{"name": "momentum", "beta": 0.5, "form": "exponential"}],
}
NNM_TM = {"aggregator": "nnm+trimmed_mean"}
ATTACKS = {"ipm_10": IPM_LARGE, "sign_flip": SIGN_FLIP, "ipm_0.1": IPM_SMALL, "alie": ALIE}


def _freeze(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


@cache
def _run(partition: str, defense: str, attack: str, rounds: int = 20) -> tuple[Any, ...]:
    import json

    torch.set_num_threads(1)
    cfg: dict[str, Any] = {
        "seed": 0,
        "rounds": rounds,
        "eval_every": rounds,
        "data": {"dataset": "digits", "partition": json.loads(partition)},
        "model": {"name": "mlp", "hidden": [32]},
        "clients": {"n_clients": 20},
        "training": {"batch_size": 16, "learning_rate": 0.1, "local_epochs": 2},
        "defense": json.loads(defense),
        "attack": json.loads(attack),
    }
    sim = build_simulation(parse_spec(cfg))
    state = sim.initial_state()
    records = []
    for _ in range(rounds):
        state, out = sim.run_round(state)
        records.append(out.record)
    return tuple(records)


def accuracy(partition: dict, defense: dict, attack: dict) -> float:
    records = _run(_freeze(partition), _freeze(defense), _freeze(attack))
    return float(records[-1]["test_accuracy"])


def test_large_ipm_and_sign_flip_wreck_the_mean() -> None:
    clean = accuracy(IID, {}, {})
    assert clean > 0.85
    for attack in (IPM_LARGE, SIGN_FLIP):
        assert accuracy(IID, {}, attack) < 0.3


@pytest.mark.parametrize("attack", ["ipm_0.1", "alie"])
def test_small_ipm_and_alie_degrade_a_robust_rule(attack: str) -> None:
    drops = {
        rule: accuracy(SKEWED, {"aggregator": rule}, {})
        - accuracy(SKEWED, {"aggregator": rule}, ATTACKS[attack])
        for rule in ("median", "trimmed_mean")
    }
    assert max(drops.values()) >= 0.05, drops


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_nnm_trimmed_mean_recovers_clean_accuracy(attack: str) -> None:
    clean = accuracy(IID, {}, {})
    assert accuracy(IID, NNM_TM, ATTACKS[attack]) >= 0.9 * clean


@pytest.mark.parametrize("attack", ["ipm_10", "sign_flip"])
def test_centered_clipping_with_momentum_recovers(attack: str) -> None:
    clean = accuracy(IID, {}, {})
    assert accuracy(IID, CC_MOMENTUM, ATTACKS[attack]) >= 0.9 * clean
    assert accuracy(IID, {}, ATTACKS[attack]) < 0.3  # the same attack without the defense


def _detection(free_rider: str, aggregator: str) -> tuple[float, float, float, int | None]:
    attack = {"free_riders": {"name": free_rider, "count": 3}}
    records = _run(_freeze(IID), _freeze({"aggregator": aggregator}), _freeze(attack), 10)
    tpr, fpr, auc = [], [], []
    for r in records:
        ids = [int(k) for k in r["scores"]]
        rows = [ids.index(i) for i in r["flagged"] if i in ids]
        s = detection_summary(rows, [r["scores"][str(i)] for i in ids], ids, r["free_riders"])
        tpr.append(s["tpr"])
        fpr.append(s["fpr"])
        auc.append(s["auroc"])
    truth = sorted({i for r in records for i in r["free_riders"]})
    first = first_detection_round([r["flagged"] for r in records], truth)
    return float(np.mean(tpr)), float(np.mean(fpr)), float(np.mean(auc)), first


@pytest.mark.parametrize("free_rider", ["zero", "disguised"])
def test_free_riders_are_detected(free_rider: str) -> None:
    tpr, fpr, _, first = _detection(free_rider, "signguard")
    assert tpr >= 0.9 and fpr <= 0.1 and first == 1
    _, _, auc, _ = _detection(free_rider, "fltrust")
    assert auc >= 0.95
