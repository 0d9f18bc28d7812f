"""The small DP-FTRL run the run and ledger-check tests share: 12 clients on the
min-separation schedule, clipped updates, a tree or BandMF server transform."""

from __future__ import annotations

from typing import Any

from fedguard.config import RunSpec, parse_spec

ROUNDS, SEPARATION, CLIP = 6, 3, 0.5


def ftrl_spec(name: str, server: dict[str, Any], **clients: Any) -> RunSpec:
    """The run named ``name`` with server transform ``server`` (clip norm added) and extra
    ``clients`` settings."""
    return parse_spec(
        {
            "name": name,
            "seed": 4,
            "rounds": ROUNDS,
            "eval_every": ROUNDS,
            "model": {"name": "mlp", "hidden": [8]},
            "clients": {
                "n_clients": 12,
                "weighting": "uniform",
                "sampling": "min_separation",
                "min_separation": SEPARATION,
                **clients,
            },
            "training": {"batch_size": 32, "learning_rate": 0.1},
            "defense": {
                "client_transforms": [{"name": "clip", "clip_norm": CLIP}],
                "server_transforms": [{"clip_norm": CLIP, **server}],
            },
        }
    )
