"""Matrices end to end on tiny configs: expansion, resume, failures, incompatibility, bad input."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedguard.errors import ConfigError, UserError
from fedguard.matrix import store as store_mod
from fedguard.matrix.config import expand_attacks, expand_defenses
from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.store import ResultStore

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "name": "t",
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid", "validation_fraction": 0.1},
    "model": {"name": "logreg"},
    "clients": {"n_clients": 8},
    "training": {"batch_size": 32, "learning_rate": 0.1},
}


def write_matrix(tmp_path: Path, **fields) -> Path:
    cfg = {"name": "m", "base": BASE, "n_malicious": 2, "seeds": [0], **fields}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fedguard.cli.main", *args], capture_output=True, text=True, cwd=ROOT
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_list_parameters_expand_and_baselines_are_included() -> None:
    attacks = expand_attacks([{"name": "ipm", "epsilon": [0.1, 10.0]}, "zero"], n_malicious=3)
    labels = [a for a, _ in attacks]
    assert labels == ["none", "ipm(epsilon=0.1)[3]", "ipm(epsilon=10.0)[3]", "zero[3]"]
    assert attacks[3][1] == {"free_riders": {"name": "zero", "count": 3, "params": {}}}
    defenses = expand_defenses(
        ["krum", {"aggregator": {"name": "trimmed_mean", "n_byzantine": [1, 2]}}]
    )
    assert [d for d, _ in defenses] == [
        "mean",
        "krum",
        "trimmed_mean(n_byzantine=1)",
        "trimmed_mean(n_byzantine=2)",
    ]


def test_run_resume_failure_and_incompatible(tmp_path: Path) -> None:
    cfg = write_matrix(
        tmp_path,
        attacks=["sign_flip"],
        defenses=[
            "median",
            {"aggregator": "krum", "transport": "secagg", "label": "krum+secagg"},
            {"aggregator": "fltrust", "label": "fltrust-no-root"},
        ],
        axes={"data.validation_fraction": [0.0]},
    )
    plan = plan_matrix(cfg)
    assert len(plan.cells) == 8  # (none, sign_flip) × (mean, median, krum+secagg, fltrust)
    assert len(plan.incompatible) == 2  # krum under secure aggregation, with and without attack
    out = tmp_path / "out"
    first = run_matrix(plan, out)
    assert first["ran"] == 6
    rows = ResultStore(out / "results.sqlite").rows()
    status = {(r["defense"], r["attack"]): r["status"] for r in rows}
    assert status[("krum+secagg", "sign_flip[2]")] == "incompatible"
    assert status[("fltrust-no-root", "none")] == "failed"  # no root dataset: error recorded
    assert status[("median", "sign_flip[2]")] == "done"
    failed = next(r for r in rows if r["status"] == "failed")
    assert "validation_fraction" in failed["error"]
    incompatible = next(r for r in rows if r["status"] == "incompatible")
    assert "secagg" in incompatible["error"]
    csv = (out / "matrix.csv").read_text()
    assert "accuracy_drop" in csv and "test_accuracy" in csv
    assert (out / "heatmap_test_accuracy.png").is_file()

    again = run_matrix(plan_matrix(cfg), out)  # resume: only the failed cells run again
    assert again["ran"] == 2 and again["skipped"] == 6

    code, shown = cli("show", str(out))
    assert code == 0 and "sign_flip[2]" in shown and "incompatible" in shown


def test_code_change_invalidates_cells(tmp_path: Path, monkeypatch) -> None:
    cfg = write_matrix(tmp_path, attacks=[], defenses=[])
    out = tmp_path / "out"
    assert run_matrix(plan_matrix(cfg), out)["ran"] == 1
    assert run_matrix(plan_matrix(cfg), out)["ran"] == 0
    monkeypatch.setattr(store_mod, "code_hash", lambda: "patched")
    assert run_matrix(plan_matrix(cfg), out)["ran"] == 1


def test_unknown_component_fails_before_anything_runs(tmp_path: Path) -> None:
    cfg = write_matrix(tmp_path, attacks=["no_such_attack"], defenses=["median"])
    out = tmp_path / "out"
    code, output = cli("matrix", str(cfg), "--out", str(out))
    assert code == 2 and "unknown attack 'no_such_attack'" in output and "valid names" in output
    assert not out.exists()
    cfg = write_matrix(tmp_path, attacks=[], defenses=["no_such_rule"])
    code, output = cli("matrix", str(cfg), "--out", str(out))
    assert code == 2 and "unknown aggregator 'no_such_rule'" in output
    assert "Traceback" not in output


def test_cell_limit_needs_yes(tmp_path: Path) -> None:
    cfg = write_matrix(
        tmp_path, attacks=["sign_flip"], defenses=["median"], seeds=[0, 1], max_cells=3
    )
    with pytest.raises(ConfigError, match="expands to 8 cells, more than max_cells"):
        plan_matrix(cfg)
    assert len(plan_matrix(cfg, confirmed=True).cells) == 8


def test_corrupt_results_are_reported_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    db = out / "results.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="not a readable results database"):
        ResultStore(db)
    assert db.read_bytes().startswith(b"this is not a database")
    cfg = write_matrix(tmp_path, attacks=[], defenses=[])
    code, output = cli("matrix", str(cfg), "--out", str(out))
    assert code == 2 and "never overwritten" in output


def test_unanswering_ray_address_fails_fast(tmp_path: Path) -> None:
    cfg = write_matrix(tmp_path, attacks=[], defenses=[])
    code, output = cli(
        "matrix",
        str(cfg),
        "--out",
        str(tmp_path / "o"),
        "--executor",
        "ray",
        "--address",
        "127.0.0.1:9",
    )
    assert code == 2 and "does not answer" in output


def test_store_is_sqlite_with_one_row_per_cell(tmp_path: Path) -> None:
    cfg = write_matrix(tmp_path, attacks=["sign_flip"], defenses=[])
    out = tmp_path / "out"
    run_matrix(plan_matrix(cfg), out)
    with sqlite3.connect(out / "results.sqlite") as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM cells")]
    assert len(keys) == len(set(keys)) == 2


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "matrices").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_matrices_validate(path: Path) -> None:
    plan = plan_matrix(path, confirmed=True)
    assert len(plan.cells) >= 2
    labels = {c.attack for c in plan.cells}
    assert "none" in labels  # the no-attack baseline is always there


def test_fraction_malicious_is_an_axis(tmp_path: Path) -> None:
    cfg = write_matrix(tmp_path, attacks=["sign_flip"], defenses=[], n_malicious=[1, 3])
    cells = plan_matrix(cfg).cells
    # (none, sign_flip) × mean × {1, 3}: the no-attack cells differ by the rule's tolerance f
    assert len(cells) == 4
    attacked = {c.spec.attack.n_malicious for c in cells if c.attack != "none"}
    assert attacked == {1, 3}
    assert {c.axes for c in cells} == {(("n_malicious", 1),), (("n_malicious", 3),)}


def test_list_parameters_of_transforms_expand() -> None:
    defenses = expand_defenses(
        [
            {
                "label": "dp",
                "client_transforms": [{"name": "clip", "clip_norm": 1.0}],
                "server_transforms": [
                    {"name": "central_gaussian", "clip_norm": 1.0, "noise_multiplier": [0.5, 2.0]}
                ],
            }
        ]
    )
    assert [d for d, _ in defenses] == [
        "mean",
        "dp:noise_multiplier=0.5",
        "dp:noise_multiplier=2.0",
    ]
    noise = [s["server_transforms"][0]["noise_multiplier"] for _, s in defenses[1:]]
    assert noise == [0.5, 2.0]
    assert defenses[1][1]["client_transforms"] == [{"name": "clip", "clip_norm": 1.0}]
