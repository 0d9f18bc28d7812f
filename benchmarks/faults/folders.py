"""Small, real run and matrix folders to inject faults into (seconds to build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedguard.config import parse_spec
from fedguard.launch import execute

#: A DP run (central Gaussian on clipped updates, Poisson sampling) with saved updates and a
#: privacy attack: it holds every kind of file a run folder can hold.
DP_RUN: dict[str, Any] = {
    "name": "faults",
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": "logreg",
    "clients": {
        "n_clients": 6,
        "sampling": "poisson",
        "sampling_rate": 0.8,
        "weighting": "uniform",
    },
    "training": {"batch_size": 32},
    "save_updates": True,
    # an analytic inversion in round 1 leaves image-grid artifacts for the report
    "attack": {"privacy_attacks": [{"name": "analytic", "at_round": 0, "max_clients": 1}]},
    "defense": {
        "client_transforms": [{"name": "clip", "clip_norm": 1.0}],
        "server_transforms": [
            {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 1.0}
        ],
    },
}

#: A matrix of 2 × 2 cells × 1 seed, 2 rounds each.
TINY_MATRIX: dict[str, Any] = {
    "name": "faults",
    "base": {
        "data": {"dataset": "digits", "partition": "iid"},
        "model": "logreg",
        "clients": {"n_clients": 8},
        "training": {"batch_size": 32},
    },
    "rounds": 2,
    "n_malicious": 2,
    "attacks": ["sign_flip"],
    "defenses": ["median"],
    "seeds": [0],
}


def make_run(out: Path, spec: dict[str, Any] | None = None) -> Path:
    execute(parse_spec(spec or DP_RUN), out)
    return out


def matrix_config(folder: Path, config: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "matrix.yaml"
    path.write_text(yaml.safe_dump(config or TINY_MATRIX))
    return path


def make_matrix(out: Path, config_path: Path) -> Path:
    from fedguard.matrix.runner import plan_matrix, run_matrix

    run_matrix(plan_matrix(config_path), out)
    return out
