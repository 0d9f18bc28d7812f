"""A user's nn.Module on Parquet data, FEMNIST-format and CIFAR-format files, end to end through
the CLI: run, matrix, audit, contrib, report — and reading someone else's run never imports the
user's code."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from .helpers import cifar10_archive, cli, femnist_json

USER_MODULE = """
from torch import nn

def make_model(input_shape, n_classes, hidden=8):
    return nn.Sequential(nn.Linear(input_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, n_classes))
"""
MODULE = "fg_e2e_user_net"


@pytest.fixture
def user_setup(tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{MODULE}.py").write_text(USER_MODULE)
    rng = np.random.default_rng(0)
    n = 160
    y = rng.integers(0, 3, n)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n) + 5 * y,
            "income": rng.normal(3, 1, n) - y,
            "hospital": [f"h{i % 6}" for i in range(n)],
            "outcome": y,
        }
    )
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "patients.parquet")
    config = {
        "name": "own",
        "rounds": 2,
        "save_updates": True,
        "data": {
            "dataset": {
                "name": "parquet",
                "path": str(tmp_path / "patients.parquet"),
                "label_column": "outcome",
                "client_column": "hospital",
                "normalize": True,
            },
            "partition": "natural",
        },
        "model": {
            "name": "torch_module",
            "factory": f"{MODULE}:make_model",
            "kwargs": {"hidden": 6},
            "path": str(code),
        },
        "clients": {"n_clients": 6},
        "training": {"batch_size": 8, "learning_rate": 0.1},
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    yield tmp_path, code
    sys.modules.pop(MODULE, None)
    if str(code) in sys.path:
        sys.path.remove(str(code))


def test_own_model_and_parquet_run_audit_contrib_report(user_setup, capsys) -> None:
    tmp_path, code = user_setup
    run = tmp_path / "run"
    status, out = cli(capsys, "run", str(tmp_path / "own.yaml"), "--out", str(run))
    assert status == 0, out
    assert MODULE in sys.modules
    # the run folder goes to someone else, without the user's code
    shutil.rmtree(code)
    sys.modules.pop(MODULE, None)
    sys.path.remove(str(code))
    for args in (
        ["show", str(run)],
        ["audit", str(run)],
        ["report", str(run), "--out", str(tmp_path / "r.html")],
    ):
        status, out = cli(capsys, *args)
        assert status == 0, (args, out)
        assert MODULE not in sys.modules, args
    assert (tmp_path / "r.html").stat().st_size > 0


def test_own_model_contrib(user_setup, capsys) -> None:
    tmp_path, _ = user_setup
    run = tmp_path / "run"
    status, out = cli(capsys, "run", str(tmp_path / "own.yaml"), "--out", str(run))
    assert status == 0, out
    status, out = cli(capsys, "contrib", str(run), "--method", "exact", "--json")
    assert status == 0, out
    result = json.loads(out[out.index("{") :])
    values = result["scores"]["values"]
    info = result["scores"]["info"]
    assert len(values) == 6  # one Shapley value per natural client (hospital)
    # exact Shapley's efficiency axiom: the values sum to the grand coalition's gain
    assert sum(values) == pytest.approx(info["grand_utility"] - info["empty_utility"], abs=1e-9)
    # the table: intervals per client, flags Holm-adjusted over all clients (an interval that
    # excludes 0 without a flag is not a contradiction, and the headers say why)
    status, out = cli(capsys, "contrib", str(run), "--method", "exact")
    assert status == 0, out
    assert "95% interval (per client)" in out and "flag (Holm)" in out


def test_own_model_matrix_and_report(user_setup, capsys) -> None:
    tmp_path, _ = user_setup
    matrix = {
        "name": "own_matrix",
        "base": "own.yaml",
        "n_malicious": 1,
        "attacks": ["sign_flip"],
        "defenses": ["median"],
        "seeds": [0],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    status, out = cli(capsys, "matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "m"))
    assert status == 0, out
    status, out = cli(capsys, "report", str(tmp_path / "m"), "--out", str(tmp_path / "m.html"))
    assert status == 0, out


def test_bad_own_model_is_one_sentence(user_setup, capsys) -> None:
    tmp_path, _ = user_setup
    cfg = yaml.safe_load((tmp_path / "own.yaml").read_text())
    cfg["model"]["factory"] = f"{MODULE}:make_modle"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    status, out = cli(capsys, "run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad"))
    assert status == 2 and "cannot be imported" in out and "Traceback" not in out, out
    assert not (tmp_path / "bad" / "complete.json").exists()
    cfg["model"] = {"name": "logreg"}
    cfg["data"]["dataset"]["client_column"] = "ward"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    status, out = cli(capsys, "run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad2"))
    assert status == 2 and "dataset.client_column 'ward' is not a column" in out, out


def test_femnist_format_with_lenet(tmp_path: Path, capsys) -> None:
    writers = {f"f{i:04d}": 12 + i for i in range(8)}
    (tmp_path / "femnist" / "train").mkdir(parents=True)
    femnist_json(tmp_path / "femnist" / "train" / "all_data_0.json", writers)
    config = {
        "name": "femnist",
        "rounds": 1,
        "data": {
            "dataset": {"name": "leaf", "path": str(tmp_path / "femnist")},
            "partition": {"name": "natural", "min_samples": 5},
        },
        "model": "lenet5",
        "clients": {"n_clients": 6},
        "training": {"batch_size": 8},
    }
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(config))
    status, out = cli(capsys, "run", str(tmp_path / "f.yaml"), "--out", str(tmp_path / "run"))
    assert status == 0, out
    status, out = cli(capsys, "audit", str(tmp_path / "run"))
    assert status == 0, out


def test_cifar_format_with_resnet8_gn(tmp_path: Path, capsys, monkeypatch) -> None:
    archive = cifar10_archive(tmp_path / "c.tar.gz", per_batch=20)
    (tmp_path / "cache" / "cifar10").mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cache" / "cifar10", filter="data")
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "cache"))
    config = {
        "name": "cifar",
        "rounds": 1,
        "data": {"dataset": "cifar10", "partition": {"name": "dirichlet", "alpha": 0.5}},
        "model": {"name": "resnet8_gn", "width": 4},
        "clients": {"n_clients": 4},
        "training": {"batch_size": 8},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    status, out = cli(capsys, "run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
    assert status == 0, out
    status, out = cli(capsys, "report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"))
    assert status == 0, out
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "empty"))
    status, out = cli(capsys, "run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run2"))
    assert status == 2 and "fedguard data fetch cifar10" in out, out


def test_privacy_statement_says_normalisation_is_not_covered(user_setup, capsys) -> None:
    tmp_path, _ = user_setup
    cfg = yaml.safe_load((tmp_path / "own.yaml").read_text())
    cfg["clients"].update({"sampling": "poisson", "sampling_rate": 0.5, "weighting": "uniform"})
    cfg["defense"] = {
        "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
        "server_transforms": [
            {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
        ],
    }
    cfg["save_updates"] = False
    (tmp_path / "dp.yaml").write_text(yaml.safe_dump(cfg))
    status, out = cli(capsys, "run", str(tmp_path / "dp.yaml"), "--out", str(tmp_path / "dp"))
    assert status == 0, out
    status, out = cli(capsys, "report", str(tmp_path / "dp"), "--out", str(tmp_path / "dp.html"))
    assert status == 0, out
    html = (tmp_path / "dp.html").read_text()
    assert "standardised with the mean and standard deviation of the training split" in html
    cfg["data"]["dataset"]["normalize"] = False
    (tmp_path / "dp.yaml").write_text(yaml.safe_dump(cfg))
    status, out = cli(capsys, "run", str(tmp_path / "dp.yaml"), "--out", str(tmp_path / "dp2"))
    assert status == 0, out
    status, out = cli(capsys, "report", str(tmp_path / "dp2"), "--out", str(tmp_path / "d2.html"))
    assert "standardised with the mean" not in (tmp_path / "d2.html").read_text()
