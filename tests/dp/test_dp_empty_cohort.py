"""An empty Poisson cohort still releases a noised aggregate, and the ledger accounts for it."""

from __future__ import annotations

import torch

from fedguard.config import parse_spec
from fedguard.launch import execute


def test_empty_poisson_rounds_are_noised_and_accounted() -> None:
    spec = parse_spec(
        {
            "rounds": 4,
            "data": {"dataset": "digits", "partition": "iid"},
            "model": "logreg",
            "clients": {
                "n_clients": 5,
                "sampling": "poisson",
                "sampling_rate": 0.01,
                "weighting": "uniform",
            },
            "defense": {
                "client_transforms": [{"name": "clip", "clip_norm": 1.0}],
                "server_transforms": [
                    {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 1.0}
                ],
            },
        }
    )
    result = execute(spec)
    empty = [r for r in result.records if r["clients"] == 0]
    assert empty, "rate 0.01 over 5 clients leaves some rounds empty for this seed"
    # every round, empty or not, has its Gaussian event in the ledger
    assert all(r["population"] for r in result.ledger["rounds"])
    # and the model moved by the noise alone in the empty rounds
    sim = result.simulation
    state = sim.initial_state()
    for _ in range(4):
        before = state.params
        state, out = sim.run_round(state)
        if out.record["clients"] == 0:
            assert not torch.equal(state.params, before)
