"""Values that cannot work fail validation with one sentence before any folder is created, and
``max_cells`` is checked from the axes before any cell is built (issue 14 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedguard.cli.main import run_cli
from fedguard.errors import ConfigError

BASE = {"name": "v", "rounds": 1, "model": "logreg", "clients": {"n_clients": 4}}

UNWORKABLE = {
    "infinite learning rate": ("training", {"learning_rate": float("inf")}, "learning_rate"),
    "NaN server learning rate": ("server", {"learning_rate": float("nan")}, "learning_rate"),
    "batch of 10^12": ("training", {"batch_size": 1e12}, "batch_size"),
    "10^12 local epochs": ("training", {"local_epochs": 1e12}, "local_epochs"),
    "negative seed": ("seed", -1, "seed"),
    "seed 2^32": ("seed", 2**32, "seed"),
    "training seed 2^32": ("training_seed", 2**32, "training_seed"),
    "empty validation split": ("data", {"validation_fraction": 1e-9}, "validation_fraction"),
    "empty test split": ("data", {"test_fraction": 1e-9}, "test_fraction"),
    "infinite delta": ("privacy", {"delta": float("inf")}, "delta"),
}


@pytest.mark.parametrize("case", sorted(UNWORKABLE))
def test_unworkable_value_fails_before_anything_is_written(
    case: str, tmp_path: Path, capsys
) -> None:
    key, value, field = UNWORKABLE[case]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**BASE, key: value}))
    out = tmp_path / "out"
    status = run_cli(["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], err
    assert not out.exists()


def test_largest_seed_is_valid() -> None:
    from fedguard.config import parse_spec

    assert parse_spec({"seed": 2**32 - 1}).seed == 2**32 - 1


def _matrix(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "m.yaml"
    cfg = {
        "name": "huge",
        "base": {
            "model": "logreg",
            "clients": {"n_clients": 8},
            "data": {"partition": {"name": "dirichlet", "alpha": 0.5}},
        },
        "rounds": 1,
        "n_malicious": 2,
        "attacks": ["sign_flip"],
        "defenses": ["median"],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_huge_matrix_is_refused_before_cells_are_built(tmp_path: Path, monkeypatch) -> None:
    import fedguard.matrix.runner as runner

    def no_expansion(*args, **kwargs):
        raise AssertionError("cells were built before max_cells was checked")

    monkeypatch.setattr(runner, "expand_cells", no_expansion)
    # 2 attacks × 2 defenses × 320 seeds × 320 alphas = 409,600 cells
    config = _matrix(
        tmp_path,
        seeds=list(range(320)),
        axes={"data.partition.alpha": [0.1 + k / 100 for k in range(320)]},
    )
    with pytest.raises(ConfigError, match="409,600 cells"):
        runner.plan_matrix(config)


def test_cell_count_matches_the_expansion(tmp_path: Path) -> None:
    from fedguard.matrix.config import count_cells, expand_cells, load_matrix

    config = _matrix(
        tmp_path,
        attacks=["sign_flip", {"name": "ipm", "epsilon": [0.1, 10.0]}],
        defenses=["median", {"aggregator": {"name": "trimmed_mean", "beta": [0.1, 0.2]}}],
        n_malicious=[1, 2],
        seeds=[0, 1],
        axes={"data.partition.alpha": [0.5, 1.0]},
    )
    cfg, base = load_matrix(config)
    assert count_cells(cfg) == len(expand_cells(cfg, base)) == 2 * 4 * 4 * 2 * 2


def test_matrix_seed_outside_range_is_refused(tmp_path: Path) -> None:
    from fedguard.matrix.runner import plan_matrix

    with pytest.raises(ConfigError, match="seeds"):
        plan_matrix(_matrix(tmp_path, seeds=[2**32]))
