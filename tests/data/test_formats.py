"""Dataset formats: CIFAR pickles (restricted), LEAF JSON, Parquet, CSV/NPZ client ids, image
folders; natural clients; normalisation from the training split only."""

from __future__ import annotations

import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fedguard.core.federated_data import build_federated_data
from fedguard.data.cifar import Cifar10Dataset, read_batch
from fedguard.data.datasets import CsvDataset, NpzDataset
from fedguard.data.image_folder import ImageFolderDataset
from fedguard.data.leaf import ALPHABET, LeafDataset, encode_text
from fedguard.data.natural import Natural
from fedguard.data.parquet import ParquetDataset
from fedguard.data.partition import IID
from fedguard.data.safe_pickle import load_restricted
from fedguard.errors import ConfigError

from .helpers import cifar10_archive, cifar_batch, femnist_json


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_accepts_arrays_and_refuses_code(tmp_path: Path) -> None:
    batch = cifar_batch(4, 0)
    loaded = load_restricted(pickle.dumps(batch, 3), "batch")
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    evil = pickle.dumps({b"data": _Exploit()}, 3)
    with pytest.raises(ConfigError, match=r"refers to posix.system|refers to nt.system"):
        load_restricted(evil, "batch")
    # a harmless-looking but unexpected global is refused just the same
    with pytest.raises(ConfigError, match="collections.OrderedDict"):
        from collections import OrderedDict

        load_restricted(pickle.dumps(OrderedDict(a=1), 3), "batch")


def test_cifar_batch_with_anything_but_the_expected_arrays(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}, 3))
    with pytest.raises(ConfigError, match="uint8 array"):
        read_batch(path, b"labels")
    path.write_bytes(pickle.dumps([np.zeros((2, 3072), np.uint8)], 3))
    with pytest.raises(ConfigError, match="must hold a dict"):
        read_batch(path, b"labels")
    batch = cifar_batch(3, 0)
    batch[b"labels"] = batch[b"labels"][:2]
    path.write_bytes(pickle.dumps(batch, 3))
    with pytest.raises(ConfigError, match="3 integer labels"):
        read_batch(path, b"labels")


def test_cifar_pixel_layout_is_channel_planes(tmp_path: Path) -> None:
    """Each row is 1024 red, 1024 green, 1024 blue values, row-major 32×32."""
    batch = cifar_batch(2, 0)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, 3))
    x, _ = read_batch(path, b"labels")
    row = batch[b"data"][1]
    assert x[1, 1, 2, 5] == row[1024 + 2 * 32 + 5]
    assert x[1, 2, 31, 31] == row[3071]


def test_cifar_normalisation_uses_training_split_only(tmp_path: Path) -> None:
    archive = cifar10_archive(tmp_path / "a.tar.gz", per_batch=10)
    (tmp_path / "cache" / "cifar10").mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cache" / "cifar10", filter="data")
    raw = Cifar10Dataset(dir=str(tmp_path / "cache"), normalize=False).load()
    data = Cifar10Dataset(dir=str(tmp_path / "cache")).load()
    fed = build_federated_data(data, IID(), 4, 0.25, 0.0, seed=0)
    raw_fed = build_federated_data(raw, IID(), 4, 0.25, 0.0, seed=0)
    train = raw_fed.train.features
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3), unbiased=False)
    assert fed.normalization is not None
    assert fed.normalization["source"] == "training split only"
    torch.testing.assert_close(torch.tensor(fed.normalization["mean"]), mean)
    expected_test = (raw_fed.test.features - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(fed.test.features, expected_test)
    per_channel = fed.train.features.mean(dim=(0, 2, 3))
    torch.testing.assert_close(per_channel, torch.zeros(3), atol=1e-5, rtol=0)
    assert fed.value_range is not None
    low, high = fed.value_range
    assert low == pytest.approx(float((-mean / std).min()))
    assert high == pytest.approx(float(((1 - mean) / std).max()))


def test_leaf_femnist_natural_clients(tmp_path: Path) -> None:
    writers = {f"f{i:04d}_{i}": n for i, n in enumerate([30, 25, 3, 40, 28, 2, 35])}
    folder = tmp_path / "femnist"
    (folder / "train").mkdir(parents=True)
    femnist_json(folder / "train" / "all_data_0.json", writers)
    data = LeafDataset(path=str(folder)).load()
    assert data.input_shape == (1, 28, 28) and data.value_range == (0.0, 1.0)
    assert data.groups is not None and int(data.groups.max()) + 1 == len(writers)
    fed = build_federated_data(data, Natural(min_samples=5), 4, 0.2, 0.0, seed=3)
    train_groups = fed.train.groups.numpy()
    for part in fed.partition:  # every client is exactly one writer's training samples
        assert len(np.unique(train_groups[part])) == 1
        assert len(part) == int((train_groups == train_groups[part[0]]).sum())
        assert len(part) >= 5
    chosen = sorted(int(train_groups[p[0]]) for p in fed.partition)
    again = build_federated_data(data, Natural(min_samples=5), 4, 0.2, 0.0, seed=3)
    assert chosen == sorted(int(again.train.groups[p[0]]) for p in again.partition)
    with pytest.raises(ConfigError, match=r"clients.n_clients \(6\) exceeds the"):
        build_federated_data(data, Natural(min_samples=5), 6, 0.2, 0.0, seed=3)
    with pytest.raises(ConfigError, match=r"partition.max_clients=3"):
        build_federated_data(data, Natural(min_samples=5, max_clients=3), 4, 0.2, 0.0, seed=3)


def test_natural_needs_client_ids() -> None:
    from fedguard.data.datasets import BreastCancerDataset

    with pytest.raises(ConfigError, match="needs a dataset with natural clients"):
        build_federated_data(BreastCancerDataset().load(), Natural(), 4, 0.2, 0.0, seed=0)


def test_leaf_file_with_a_missing_user(tmp_path: Path) -> None:
    path = femnist_json(tmp_path / "f.json", {"a": 3, "b": 4})
    doc = json.loads(path.read_text())
    del doc["user_data"]["b"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="lists user 'b' but has no user_data"):
        LeafDataset(path=str(path)).load()
    doc["users"], doc["num_samples"] = ["a"], [5]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="num_samples 5; they must agree"):
        LeafDataset(path=str(path)).load()


def test_leaf_shakespeare_text(tmp_path: Path) -> None:
    lines = {
        "THE_TEMPEST_PROSPERO": ["To be, or not", "Now is the win"],
        "HAMLET_HORATIO": ["What's he that", "Ay, that's th"],
    }
    doc = {
        "users": list(lines),
        "num_samples": [2, 2],
        "user_data": {u: {"x": xs, "y": ["e", "t"]} for u, xs in lines.items()},
    }
    (tmp_path / "s.json").write_text(json.dumps(doc))
    data = LeafDataset(path=str(tmp_path / "s.json"), sequence_length=16).load()
    assert data.input_shape == (16,) and data.n_classes == 2
    assert data.features[0, 0] == ALPHABET.index("T") + 1 and data.features[0, 15] == 0
    assert encode_text("~", 1) == [0]  # out-of-alphabet characters are 0


def _user_table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f1": rng.normal(3.0, 2.0, n),
            "f2": rng.normal(-1.0, 0.5, n),
            "user": [f"u{i % 5}" for i in range(n)],
            "y": rng.integers(0, 3, n),
        }
    )


def test_parquet_named_columns_and_natural_clients(tmp_path: Path) -> None:
    frame = _user_table()
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "t.parquet")
    data = ParquetDataset(
        path=str(tmp_path / "t.parquet"), label_column="y", client_column="user"
    ).load()
    assert data.input_shape == (2,) and data.n_classes == 3
    np.testing.assert_allclose(data.features.numpy(), frame[["f1", "f2"]].to_numpy(np.float32))
    np.testing.assert_array_equal(data.groups.numpy(), frame["user"].str[1:].astype(int).to_numpy())
    fed = build_federated_data(data, Natural(), 5, 0.2, 0.0, seed=0)
    assert sum(len(p) for p in fed.partition) == len(fed.train)


def test_parquet_list_column_with_input_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((12, 16)).astype(np.float32)
    table = pa.table({"pixels": list(images), "label": [i % 2 for i in range(12)]})
    pq.write_table(table, tmp_path / "img.parquet")
    data = ParquetDataset(path=str(tmp_path / "img.parquet"), input_shape=(1, 4, 4)).load()
    assert data.input_shape == (1, 4, 4)
    np.testing.assert_allclose(data.features.reshape(12, -1).numpy(), images)


def test_parquet_without_the_named_column(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(_user_table()), tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match=r"dataset.label_column 'label' is not a column"):
        ParquetDataset(path=str(tmp_path / "t.parquet")).load()
    with pytest.raises(ConfigError, match=r"dataset.client_column 'writer' is not a column"):
        ParquetDataset(
            path=str(tmp_path / "t.parquet"), label_column="y", client_column="writer"
        ).load()
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        (tmp_path / "bad.parquet").write_text("not parquet")
        ParquetDataset(path=str(tmp_path / "bad.parquet")).load()


def test_parquet_feature_normalisation_from_training_split(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(_user_table(200)), tmp_path / "t.parquet")
    data = ParquetDataset(
        path=str(tmp_path / "t.parquet"), label_column="y", client_column="user", normalize=True
    ).load()
    fed = build_federated_data(data, Natural(), 5, 0.25, 0.0, seed=0)
    torch.testing.assert_close(fed.train.features.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert fed.normalization is not None and fed.normalization["mode"] == "feature"
    assert abs(float(fed.test.features.mean(0)[0])) > 1e-4  # the test split's own mean is not 0


def test_csv_and_npz_client_ids(tmp_path: Path) -> None:
    frame = _user_table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = CsvDataset(path=str(tmp_path / "t.csv"), label_column="y", client_column="user").load()
    assert data.input_shape == (2,) and data.groups is not None
    with pytest.raises(ConfigError, match=r"dataset.client_column 'who'"):
        CsvDataset(path=str(tmp_path / "t.csv"), label_column="y", client_column="who").load()
    np.savez(
        tmp_path / "t.npz", X=frame[["f1", "f2"]].to_numpy(), y=frame["y"], client=np.arange(60) % 4
    )
    data = NpzDataset(path=str(tmp_path / "t.npz"), client_array="client").load()
    assert int(data.groups.max()) == 3
    with pytest.raises(ConfigError, match=r"dataset.client_array 'who'"):
        NpzDataset(path=str(tmp_path / "t.npz"), client_array="who").load()


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
            pixels[(cls, i)] = arr
    data = ImageFolderDataset(path=str(tmp_path / "imgs"), normalize=False).load()
    assert data.input_shape == (3, 6, 5) and data.n_classes == 2
    np.testing.assert_allclose(
        data.features[4].numpy(), pixels[("dog", 1)].transpose(2, 0, 1) / 255.0, rtol=1e-6
    )
    gray = ImageFolderDataset(path=str(tmp_path / "imgs"), channels=1, image_size=(4, 4)).load()
    assert gray.input_shape == (1, 4, 4)
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "imgs" / "cat" / "odd.png")
    with pytest.raises(ConfigError, match="2 different sizes; set dataset.image_size"):
        ImageFolderDataset(path=str(tmp_path / "imgs")).load()


def test_image_folder_decompression_bomb_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "imgs" / "a" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the limit stays on: 400 px > 100
    with pytest.raises(ConfigError, match="decompression-bomb limit"):
        ImageFolderDataset(path=str(tmp_path / "imgs")).load()


def test_leaf_sent140_tweet_text(tmp_path: Path) -> None:
    """Sent140's x is [id, date, query, user, tweet]: the tweet text is the sample."""
    doc = {
        "users": ["alice", "bob"],
        "num_samples": [2, 1],
        "user_data": {
            "alice": {
                "x": [
                    ["1", "Mon Apr 06", "NO_QUERY", "alice", "good day"],
                    ["2", "Mon Apr 06", "NO_QUERY", "alice", "bad day"],
                ],
                "y": [1, 0],
            },
            "bob": {"x": [["3", "Tue Apr 07", "NO_QUERY", "bob", "ok"]], "y": [1]},
        },
    }
    (tmp_path / "s.json").write_text(json.dumps(doc))
    data = LeafDataset(path=str(tmp_path / "s.json"), sequence_length=8).load()
    assert data.input_shape == (8,) and data.n_classes == 2
    assert data.features[2].tolist()[:3] == [ALPHABET.index("o") + 1, ALPHABET.index("k") + 1, 0]
    assert data.groups.tolist() == [0, 0, 1]


def _save_to_disk(folder: Path, table: pa.Table, shards: int = 2) -> None:
    """The layout ``datasets.Dataset.save_to_disk`` writes: Arrow stream shards + state.json."""
    folder.mkdir()
    names = []
    for k, chunk in enumerate(np.array_split(np.arange(table.num_rows), shards)):
        name = f"data-{k:05d}-of-{shards:05d}.arrow"
        part = table.slice(int(chunk[0]), len(chunk))
        with pa.OSFile(str(folder / name), "wb") as sink:
            with pa.ipc.new_stream(sink, part.schema) as writer:
                writer.write_table(part)
        names.append({"filename": name})
    state = {"_data_files": names, "_fingerprint": "x", "_split": "train"}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text("{}")


def test_huggingface_save_to_disk_folder(tmp_path: Path) -> None:
    from fedguard.data.hf_disk import HuggingFaceDiskDataset

    frame = _user_table()
    _save_to_disk(tmp_path / "hf", pa.Table.from_pandas(frame, preserve_index=False))
    data = HuggingFaceDiskDataset(
        path=str(tmp_path / "hf"), label_column="y", client_column="user"
    ).load()
    np.testing.assert_allclose(data.features.numpy(), frame[["f1", "f2"]].to_numpy(np.float32))
    assert int(data.groups.max()) == 4
    (tmp_path / "hf" / "state.json").unlink()
    with pytest.raises(ConfigError, match="not a folder written by Hugging Face save_to_disk"):
        HuggingFaceDiskDataset(path=str(tmp_path / "hf"), label_column="y").load()
