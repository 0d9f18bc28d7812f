"""Attacks that need a particular architecture say so once the model is built, before any
training: one sentence, exit 2, no run folder left behind, and a matrix cell marked incompatible."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from torch import nn

from attacks.inversion.analytic import AnalyticInversion
from attacks.inversion.dlg import DLG
from attacks.inversion.inverting_gradients import InvertingGradients
from fedguard.core import local_training
from fedguard.errors import IncompatibleError
from fedguard.models.lenet import LeNet5
from fedguard.models.mlp import MLP
from fedguard.models.resnet_gn import ResNet8GN
from tests.data.helpers import cli, femnist_json


def test_analytic_needs_a_first_fully_connected_layer_with_bias() -> None:
    attack = AnalyticInversion()
    attack.check_model(MLP(hidden=(8,)).build((64,), 10), (64,), 10)  # accepted
    for module, shape in (
        (LeNet5().build((1, 28, 28), 62), (1, 28, 28)),
        (ResNet8GN(width=4).build((3, 32, 32), 10), (3, 32, 32)),
        (nn.Sequential(nn.Linear(64, 8, bias=False), nn.Linear(8, 10)), (64,)),
    ):
        with pytest.raises(IncompatibleError, match="first layer is fully connected with a bias"):
            attack.check_model(module, shape, 10)
    reads_less = nn.Sequential(nn.Flatten(), nn.Linear(32, 10))  # not the raw 64 inputs
    with pytest.raises(IncompatibleError, match="reads 32 features but an input has 64"):
        attack.check_model(reads_less, (64,), 10)


def test_label_recovery_needs_an_output_layer_with_bias() -> None:
    headless = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10, bias=False))
    with pytest.raises(IncompatibleError, match="output layer"):
        InvertingGradients().check_model(headless, (64,), 10)
    with pytest.raises(IncompatibleError, match="output layer"):
        DLG().check_model(headless, (64,), 10)
    DLG(recover_labels_first=False).check_model(headless, (64,), 10)  # optimises soft labels
    InvertingGradients().check_model(ResNet8GN(width=4).build((3, 8, 8), 10), (3, 8, 8), 10)


def _femnist_config(tmp_path: Path) -> Path:
    (tmp_path / "femnist").mkdir()
    femnist_json(tmp_path / "femnist" / "all_data_0.json", {f"w{i}": 20 for i in range(4)})
    config = {
        "name": "lenet_analytic",
        "rounds": 1,
        "data": {
            "dataset": {"name": "leaf", "path": str(tmp_path / "femnist")},
            "partition": "natural",
            "validation_fraction": 0,
        },
        "model": "lenet5",
        "clients": {"n_clients": 3},
        "training": {"algorithm": "fedsgd"},
        "attack": {"privacy_attacks": [{"name": "analytic", "at_round": 0}]},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_run_fails_before_training(tmp_path: Path, capsys, monkeypatch) -> None:
    def never(*_args, **_kwargs):
        raise AssertionError("trained although the attack cannot work on this model")

    monkeypatch.setitem(local_training.TRAINERS, "vectorized", never)
    monkeypatch.setitem(local_training.TRAINERS, "sequential", never)
    config = _femnist_config(tmp_path)
    status, out = cli(capsys, "run", str(config), "--out", str(tmp_path / "run"))
    assert status == 2, out
    assert "first layer is fully connected with a bias (got Conv2d)" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "run" / "rounds.jsonl").exists()


def test_a_matrix_cell_is_marked_incompatible(tmp_path: Path, capsys) -> None:
    config = _femnist_config(tmp_path)
    base = yaml.safe_load(config.read_text())
    base.pop("attack")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    matrix = {
        "name": "m",
        "base": "base.yaml",
        "attacks": [{"name": "analytic", "at_round": 0}],
        "defenses": [],
        "seeds": [0],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    status, out = cli(
        capsys, "matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "m"), "--workers", "1"
    )
    assert status == 0, out
    status, out = cli(capsys, "show", str(tmp_path / "m"))
    assert "incompatible" in out, out
