from __future__ import annotations

import numpy as np
import pytest

from fedguard.data.dataset import from_arrays, split
from fedguard.data.datasets import (
    BreastCancerDataset,
    CsvDataset,
    DigitsDataset,
    NpzDataset,
    SyntheticDataset,
)
from fedguard.data.partition import IID, Dirichlet, QuantitySkew, Shards, partition_report
from fedguard.errors import ConfigError


def test_bundled_datasets_shapes() -> None:
    digits = DigitsDataset().load()
    assert digits.features.shape == (1797, 1, 8, 8) and digits.n_classes == 10
    assert float(digits.features.max()) == 1.0 and float(digits.features.min()) == 0.0
    bc = BreastCancerDataset().load()
    assert bc.features.shape == (569, 30) and bc.n_classes == 2
    syn = SyntheticDataset(n_samples=300, n_features=8, n_classes=3, n_informative=4).load()
    assert syn.features.shape == (300, 8) and syn.n_classes == 3


def test_split_is_stratified_and_seeded() -> None:
    d = DigitsDataset().load()
    tr, va, te = split(d, 0.2, 0.1, seed=3)
    assert len(tr) + len(va) + len(te) == len(d)
    assert abs(len(te) - 0.2 * len(d)) <= 1
    tr2, _, _ = split(d, 0.2, 0.1, seed=3)
    assert (tr.labels == tr2.labels).all()
    # stratified: every class's share in test is within 1 sample of 20%
    full = np.bincount(d.labels.numpy())
    test = np.bincount(te.labels.numpy(), minlength=10)
    assert np.all(np.abs(test - 0.2 * full) <= 1.5)


@pytest.mark.parametrize(
    "part", [IID(), Dirichlet(alpha=0.3), Shards(classes_per_client=2), QuantitySkew()]
)
def test_partitions_cover_once_and_non_empty(part) -> None:
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    parts = part.split(labels, 37, np.random.default_rng(1))
    assert len(parts) == 37 and all(len(p) > 0 for p in parts)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(1000))


def test_dirichlet_small_alpha_skews_labels() -> None:
    labels = np.repeat(np.arange(10), 100)
    rep_skew = partition_report(
        labels, Dirichlet(alpha=0.05).split(labels, 10, np.random.default_rng(0)), 10
    )
    rep_iid = partition_report(labels, IID().split(labels, 10, np.random.default_rng(0)), 10)

    def top_share(rep):
        return np.mean([max(r["labels"]) / r["samples"] for r in rep])

    assert top_share(rep_skew) > 0.6 > 0.3 > top_share(rep_iid)


def test_shards_give_k_classes() -> None:
    labels = np.repeat(np.arange(10), 100)
    parts = Shards(classes_per_client=2).split(labels, 10, np.random.default_rng(0))
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)


def test_more_clients_than_samples() -> None:
    with pytest.raises(ConfigError, match=r"clients.n_clients \(11\) must not exceed"):
        IID().split(np.zeros(10, dtype=int), 11, np.random.default_rng(0))


def test_dirichlet_alpha_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="partition.alpha"):
        Dirichlet(alpha=-1.0)


def test_csv_loading_and_errors(tmp_path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,b,target\n1,2,x\n3,4,y\n5,6,x\n")
    data = CsvDataset(path=str(f), label_column="target").load()
    assert data.features.shape == (3, 2) and data.labels.tolist() == [0, 1, 0]
    with pytest.raises(ConfigError, match="label_column 'label' is not a column"):
        CsvDataset(path=str(f)).load()
    nan = tmp_path / "nan.csv"
    nan.write_text("a,label\n1,0\n,1\n")
    with pytest.raises(ConfigError, match="NaN"):
        CsvDataset(path=str(nan)).load()
    with pytest.raises(ConfigError, match="does not exist"):
        CsvDataset(path=str(tmp_path / "missing.csv")).load()


def test_npz_loading(tmp_path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, X=np.ones((4, 2, 3)), y=np.array([0, 1, 0, 1]))
    data = NpzDataset(path=str(f)).load()
    assert data.input_shape == (2, 3)
    np.savez(tmp_path / "bad.npz", features=np.ones((4, 2)))
    with pytest.raises(ConfigError, match="must contain arrays 'X' and 'y'"):
        NpzDataset(path=str(tmp_path / "bad.npz")).load()


def test_nan_rejected() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        from_arrays(np.array([[1.0], [np.nan]]), np.array([0, 1]), "x")
