"""The field's workloads as shipped configs: the FEMNIST and CIFAR-10 matrices and the CIFAR-10
privacy config run end to end on tiny local files in the official formats (sizes overridden),
their synthetic twins differ from them only in the dataset, and the stand-ins have the official
shapes."""

from __future__ import annotations

import copy
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fedguard.data.stand_ins import SyntheticCifar10, SyntheticFemnist
from fedguard.errors import ConfigError
from fedguard.matrix.runner import plan_matrix
from fedguard.matrix.store import ResultStore

from .helpers import cifar10_archive, cli, femnist_json

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TWINS = [
    ("matrices/femnist.yaml", "matrices/femnist_synthetic.yaml"),
    ("matrices/cifar10.yaml", "matrices/cifar10_synthetic.yaml"),
    ("privacy_cifar10.yaml", "privacy_cifar10_synthetic.yaml"),
]


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text())


def _without_dataset(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out.pop("name")
    run = out.get("base", out)
    run["data"].pop("dataset")
    return out


@pytest.mark.parametrize(("real", "synthetic"), TWINS, ids=["femnist", "cifar10", "privacy"])
def test_synthetic_twins_differ_only_in_the_dataset(real: str, synthetic: str) -> None:
    a, b = _load(real), _load(synthetic)
    assert _without_dataset(a) == _without_dataset(b)
    dataset = (b.get("base", b))["data"]["dataset"]
    assert dataset["name"].startswith("synthetic_")
    assert not str((a.get("base", a))["data"]["dataset"]).startswith("synthetic")


@pytest.mark.parametrize(
    "name", ["matrices/femnist_synthetic.yaml", "matrices/cifar10_synthetic.yaml"]
)
def test_every_cell_of_the_grid_is_valid(name: str) -> None:
    plan = plan_matrix(CONFIGS / name)
    assert len(plan.cells) == 6 * 6 * 3  # the quickstart grid: 6 attacks × 6 defenses × 3 seeds
    assert plan.incompatible == {}


def test_stand_ins_have_the_official_shapes_and_follow_their_seed() -> None:
    femnist = SyntheticFemnist(n_writers=5, samples_per_writer=40).load()
    assert femnist.input_shape == (1, 28, 28) and femnist.n_classes == 62
    assert femnist.groups is not None and int(femnist.groups.max()) + 1 == 5
    assert femnist.value_range == (0.0, 1.0) and femnist.normalize is None
    assert 0.0 <= float(femnist.features.min()) and float(femnist.features.max()) <= 1.0
    cifar = SyntheticCifar10(n_samples=60).load()
    assert cifar.input_shape == (3, 32, 32) and cifar.n_classes == 10
    assert cifar.normalize == "channel" and cifar.groups is None
    again = SyntheticCifar10(n_samples=60).load()
    assert torch.equal(cifar.features, again.features) and torch.equal(cifar.labels, again.labels)
    other = SyntheticCifar10(n_samples=60, seed=1).load()
    assert not torch.equal(cifar.features, other.features)
    # classes are distinguishable: a sample is nearer its own class mean than the others' on average
    big = SyntheticCifar10(n_samples=400, noise=0.3, normalize=False).load()
    x, y = big.features.flatten(1), big.labels
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    assert float((torch.cdist(x, means).argmin(1) == y).float().mean()) > 0.5
    with pytest.raises(ConfigError, match="dataset.n_samples"):
        SyntheticCifar10(n_samples=5)


def _small_grid(matrix: dict[str, Any]) -> dict[str, Any]:
    """The shipped grid cut to one attack, one defense and one seed (plus the baselines)."""
    matrix["attacks"], matrix["defenses"], matrix["seeds"] = matrix["attacks"][:1], ["median"], [0]
    base = matrix["base"]
    base.update(rounds=1)
    base["clients"]["n_clients"] = 12  # 4 malicious: multi_krum's n > 2f + 2 holds in the grid
    return matrix


def test_femnist_matrix_on_a_leaf_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "femnist" / "train").mkdir(parents=True)
    writers = {f"f{i:04d}_{i % 3}": 14 + i for i in range(14)}
    femnist_json(tmp_path / "femnist" / "train" / "all_data_0.json", writers, classes=6)
    matrix = _small_grid(_load("matrices/femnist.yaml"))
    matrix["base"]["data"]["dataset"]["path"] = str(tmp_path / "femnist")
    matrix["base"]["data"]["partition"]["min_samples"] = 4
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    status, out = cli(
        capsys, "matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "m"), "--workers", "1"
    )
    assert status == 0, out
    _all_cells_done(tmp_path / "m")


def _all_cells_done(folder: Path) -> None:
    store = ResultStore(folder / "results.sqlite", read_only=True)
    try:
        rows = store.rows()
    finally:
        store.close()
    assert len(rows) == 4  # (none, the attack) × (mean, median), one seed
    assert {r["status"] for r in rows} == {"done"}, [r["error"] for r in rows]
    assert all(r["metrics"]["test_accuracy"] is not None for r in rows)


def _cifar_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = cifar10_archive(tmp_path / "c.tar.gz", per_batch=40)
    (tmp_path / "cache" / "cifar10").mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cache" / "cifar10", filter="data")
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "cache"))


def test_cifar10_matrix_on_cifar_format_files(tmp_path: Path, capsys, monkeypatch) -> None:
    _cifar_cache(tmp_path, monkeypatch)
    matrix = _small_grid(_load("matrices/cifar10.yaml"))
    matrix["base"]["model"] = {"name": "resnet8_gn", "width": 4}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    status, out = cli(
        capsys, "matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "m"), "--workers", "1"
    )
    assert status == 0, out
    _all_cells_done(tmp_path / "m")


def test_privacy_cifar10_on_cifar_format_files(tmp_path: Path, capsys, monkeypatch) -> None:
    _cifar_cache(tmp_path, monkeypatch)
    config = _load("privacy_cifar10.yaml")
    config.update(rounds=1)
    config["clients"].update(n_clients=12, cohort_size=4)
    config["model"] = {"name": "resnet8_gn", "width": 4}
    attacks = config["attack"]["privacy_attacks"]
    attacks[0]["iterations"], attacks[2]["n_shadows"] = 3, 2
    attacks[1]["n_candidates"] = 40  # 20 members and 20 non-members of 240 images
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    status, out = cli(capsys, "run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "run"))
    assert status == 0, out
    rounds = (tmp_path / "run" / "rounds.jsonl").read_text()
    for attack in ("inverting_gradients", "loss_threshold", "lira"):
        assert attack in rounds, attack
