"""Download the official dataset archives: HTTPS, resumable (HTTP Range), checksum-verified.

The archive is downloaded to ``<cache>/.downloads/<file>.part`` (a later call resumes it with a
``Range`` request), verified against the published MD5, then extracted into a temporary folder
that is renamed to ``<cache>/<name>`` — so the cache never holds a dataset that is half there.
``FEDGUARD_DATA_URL`` replaces the archives' base URL (a mirror; the tests' local server).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fedguard.data.cache import data_root, downloads_dir
from fedguard.errors import ConfigError

BASE_URL_ENV = "FEDGUARD_DATA_URL"
CHUNK = 1 << 16


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    md5: str  # published checksum of the archive
    folder: str  # the one top-level folder the archive holds
    size: int  # bytes, for the progress bar when the server does not say


#: URLs and MD5s as published on https://www.cs.toronto.edu/~kriz/cifar.html
ARCHIVES = {
    "cifar10": Archive(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        170498071,
    ),
    "cifar100": Archive(
        "cifar100",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        169001437,
    ),
}

Progress = Callable[[int, int], None]  # (bytes so far, total bytes)


def archive(name: str) -> Archive:
    if name not in ARCHIVES:
        raise ConfigError(f"dataset must be one of {', '.join(sorted(ARCHIVES))}; got {name!r}.")
    return ARCHIVES[name]


def source_url(item: Archive) -> str:
    """The archive's URL, under ``$FEDGUARD_DATA_URL`` if set; only HTTPS leaves the machine."""
    base = os.environ.get(BASE_URL_ENV)
    url = base.rstrip("/") + "/" + item.url.rsplit("/", 1)[1] if base else item.url
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(
            f"{BASE_URL_ENV} must be an https:// URL (plain http only for 127.0.0.1); got {base!r}."
        )
    return url


def fetch(name: str, root: Path | None = None, progress: Progress | None = None) -> Path:
    """Download, verify and extract dataset ``name`` into ``root`` (default: the cache)."""
    item = archive(name)
    root = root or data_root()
    target = root / name
    if target.is_dir():
        return target
    part = downloads_dir(root) / (item.url.rsplit("/", 1)[1] + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    download(source_url(item), part, progress, item.size)
    digest = md5_of(part)
    if digest != item.md5:
        part.unlink()
        raise ConfigError(
            f"the downloaded {name} archive has MD5 {digest}, not the published {item.md5}; "
            "it was deleted — fetch again (or check the mirror in "
            f"{BASE_URL_ENV})."
        )
    extract(part, item.folder, target)
    part.unlink()
    return target


def download(url: str, part: Path, progress: Progress | None, expected: int) -> None:
    """Append the rest of ``url`` to ``part`` (resuming with ``Range`` when it already exists)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status == 200 and have:  # the server ignored Range: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else expected
            with part.open("ab" if have else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    have += len(chunk)
                    if progress:
                        progress(have, total)
            if length is not None and have < total:
                raise http.client.IncompleteRead(b"", total - have)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete
            return
        raise ConfigError(f"download of {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        got = part.stat().st_size if part.exists() else 0
        raise ConfigError(
            f"download of {url} was interrupted after {got} bytes ({_reason(exc)}); run the same "
            "command again to resume it."
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed early"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return type(exc).__name__


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive_path: Path, folder: str, target: Path) -> None:
    """Extract ``folder`` of a .tar.gz to ``target`` via a temporary sibling and a rename.

    Only regular files and folders under ``folder`` are extracted (tarfile's ``data`` filter also
    refuses absolute paths, links out of the tree and device files).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            with tarfile.open(archive_path, "r:gz") as tar:
                members = [
                    m
                    for m in tar.getmembers()
                    if (m.isfile() or m.isdir())
                    and (m.name == folder or m.name.startswith(folder + "/"))
                ]
                if not any(m.isfile() for m in members):
                    raise ConfigError(f"archive {archive_path.name} holds no {folder}/ folder.")
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ConfigError(
                f"archive {archive_path.name} cannot be extracted ({type(exc).__name__})."
            ) from None
        staged = tmp / "staged"
        staged.mkdir()
        (tmp / folder).rename(staged / folder)
        staged.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached(root: Path | None = None) -> list[dict[str, object]]:
    """Datasets present in the cache, and partial downloads waiting to be resumed."""
    root = root or data_root()
    rows: list[dict[str, object]] = []
    for name, item in sorted(ARCHIVES.items()):
        path = root / name
        part = downloads_dir(root) / (item.url.rsplit("/", 1)[1] + ".part")
        if path.is_dir():
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            rows.append({"name": name, "status": "ready", "bytes": size, "path": str(path)})
        elif part.exists():
            rows.append(
                {"name": name, "status": "partial", "bytes": part.stat().st_size, "path": str(part)}
            )
        else:
            rows.append({"name": name, "status": "absent", "bytes": 0, "path": str(path)})
    return rows
