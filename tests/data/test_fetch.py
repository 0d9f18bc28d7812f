"""``fedguard data fetch|list`` against a local HTTP server: verify, resume, refuse, no leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedguard.data import fetch as fetch_mod
from fedguard.data.cifar import Cifar10Dataset, Cifar100Dataset
from fedguard.errors import ConfigError

from .helpers import cifar10_archive, cifar100_archive, cli, md5, serve


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny official-format archives served locally; the published MD5s replaced by theirs."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    a10 = cifar10_archive(folder / "cifar-10-python.tar.gz")
    a100 = cifar100_archive(folder / "cifar-100-python.tar.gz")
    for name, path in (("cifar10", a10), ("cifar100", a100)):
        item = fetch_mod.ARCHIVES[name]
        patched = fetch_mod.Archive(
            item.name, item.url, md5(path), item.folder, path.stat().st_size
        )
        monkeypatch.setitem(fetch_mod.ARCHIVES, name, patched)
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "cache"))
    return folder


def test_published_checksums_are_the_official_ones() -> None:
    # MD5s published on https://www.cs.toronto.edu/~kriz/cifar.html (and in torchvision)
    assert fetch_mod.ARCHIVES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert fetch_mod.ARCHIVES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert all(a.url.startswith("https://") for a in fetch_mod.ARCHIVES.values())


def test_fetch_verifies_extracts_and_loads(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with serve(mirror) as url:
        monkeypatch.setenv("FEDGUARD_DATA_URL", url)
        code, out = cli(capsys, "data", "fetch", "cifar10")
        assert code == 0, out
        code, out = cli(capsys, "data", "fetch", "cifar100")
        assert code == 0, out
    cache = tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == [".downloads", "cifar10", "cifar100"]
    assert list((cache / ".downloads").iterdir()) == []
    data = Cifar10Dataset(normalize=False).load()
    assert len(data) == 36 and data.input_shape == (3, 32, 32)
    assert float(data.features.min()) >= 0 and float(data.features.max()) <= 1
    assert Cifar100Dataset().load().input_shape == (3, 32, 32)
    code, out = cli(capsys, "data", "list")
    assert code == 0 and out.count("ready") == 2, out


def test_wrong_checksum_is_one_sentence_and_leaves_nothing(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    item = fetch_mod.ARCHIVES["cifar10"]
    monkeypatch.setitem(
        fetch_mod.ARCHIVES,
        "cifar10",
        fetch_mod.Archive(item.name, item.url, "0" * 32, item.folder, 1),
    )
    with serve(mirror) as url:
        monkeypatch.setenv("FEDGUARD_DATA_URL", url)
        code, out = cli(capsys, "data", "fetch", "cifar10")
    assert code == 2, out
    assert "MD5" in out and "Traceback" not in out and out.count("\n") <= 2
    cache = tmp_path / "cache"
    assert not (cache / "cifar10").exists()
    assert list((cache / ".downloads").iterdir()) == []


def test_corrupted_archive_with_matching_size_is_refused(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    path = mirror / "cifar-10-python.tar.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, different MD5
    path.write_bytes(bytes(data))
    with serve(mirror) as url:
        monkeypatch.setenv("FEDGUARD_DATA_URL", url)
        code, out = cli(capsys, "data", "fetch", "cifar10")
    assert code == 2 and "MD5" in out, out
    assert not (tmp_path / "cache" / "cifar10").exists()


def test_interrupted_download_resumes_with_range(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    size = (mirror / "cifar-10-python.tar.gz").stat().st_size
    with serve(mirror) as url:
        monkeypatch.setenv("FEDGUARD_DATA_URL", url + "/cut")
        code, out = cli(capsys, "data", "fetch", "cifar10")
        assert code == 2 and "interrupted" in out and "resume" in out, out
        assert "Traceback" not in out
        cache = tmp_path / "cache"
        part = cache / ".downloads" / "cifar-10-python.tar.gz.part"
        assert 0 < part.stat().st_size < size
        assert not (cache / "cifar10").exists()  # nothing half-there under the dataset's name
        code, out = cli(capsys, "data", "list")
        assert "partial" in out
        seen: list[str | None] = []
        original = fetch_mod.urllib.request.urlopen

        def spy(request, *args, **kwargs):
            seen.append(request.get_header("Range"))
            return original(request, *args, **kwargs)

        monkeypatch.setattr(fetch_mod.urllib.request, "urlopen", spy)
        monkeypatch.setenv("FEDGUARD_DATA_URL", url)
        code, out = cli(capsys, "data", "fetch", "cifar10")
    assert code == 0, out
    assert seen == [f"bytes={size // 2}-"]  # only the missing half was requested
    assert (cache / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()


def test_run_time_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"fedguard data fetch cifar10"):
        Cifar10Dataset().load()


def test_plain_http_only_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDGUARD_DATA_URL", "http://example.org/mirror")
    with pytest.raises(ConfigError, match="https"):
        fetch_mod.source_url(fetch_mod.ARCHIVES["cifar10"])


def test_unknown_dataset_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path / "cache"))
    code, out = cli(capsys, "data", "fetch", "mnist")
    assert code == 2 and "cifar10, cifar100" in out
    assert not (tmp_path / "cache").exists()
