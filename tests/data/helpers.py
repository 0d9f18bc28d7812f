"""Tiny files in the field's official formats, a local Range-capable HTTP server, a CLI runner."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest


def cifar_batch(n: int, seed: int, label_key: bytes = b"labels", classes: int = 10) -> dict:
    """A batch dict exactly as the official archive pickles it (bytes keys, uint8 rows)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(v) for v in rng.integers(0, classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


# pickles use protocol 3: bytes are BINBYTES, as the Python 2 originals' strings read with
# encoding="bytes" (protocol 2 would route bytes through _codecs.encode, which is refused)


def cifar10_archive(path: Path, per_batch: int = 6) -> Path:
    """``cifar-10-python.tar.gz`` in the official layout, ``per_batch`` images per batch."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for seed, name in enumerate(names):
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(cifar_batch(per_batch, seed), 3))
        meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, 3))
    return path


def cifar100_archive(path: Path, n: int = 40) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for seed, name in enumerate(("train", "test")):
            batch = cifar_batch(n, seed, b"fine_labels", 100)
            batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
            _add(tar, f"cifar-100-python/{name}", pickle.dumps(batch, 3))
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def femnist_json(path: Path, writers: dict[str, int], seed: int = 0, classes: int = 5) -> Path:
    """A LEAF FEMNIST file: 784 floats in [0, 1] per sample, one entry per writer."""
    rng = np.random.default_rng(seed)
    doc: dict = {"users": list(writers), "num_samples": list(writers.values()), "user_data": {}}
    for user, n in writers.items():
        doc["user_data"][user] = {
            "x": rng.random((n, 784)).round(3).tolist(),
            "y": rng.integers(0, classes, n).tolist(),
        }
    path.write_text(json.dumps(doc))
    return path


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves a folder with ``Range: bytes=N-`` support; ``/cut/<file>`` stops midway."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        cut = self.path.startswith("/cut/")
        name = self.path.removeprefix("/cut/").lstrip("/")
        file = Path(self.directory) / name
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if cut:
            self.close_connection = True


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Base URL of a threading HTTP server on 127.0.0.1 serving ``folder``."""

    def handler(*args, **kwargs):
        return RangeHandler(*args, directory=str(folder), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the console entry point in-process (its error handling included): (exit code, output)."""
    from fedguard.cli import main as cli_main

    argv = sys.argv
    sys.argv = ["fedguard", *args]
    code = 0
    try:
        cli_main.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out + captured.err
