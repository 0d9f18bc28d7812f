"""Atomic writes: a temp file in the same directory, fsync, then ``os.replace``.

A reader never sees a half-written file: either the old content or the new one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Called at every write point with (point, path, open file or None, bytes about to be written or
#: None). ``None`` in production; the fault-injection tests set it to crash the process model at
#: each point — including inside a write, by writing a prefix of the bytes and raising.
FaultHook = Callable[[str, Path, IO[bytes] | None, bytes | None], None]
fault_hook: FaultHook | None = None


def _point(name: str, path: Path, fh: IO[bytes] | None = None, data: bytes | None = None) -> None:
    if fault_hook is not None:
        fault_hook(name, path, fh, data)


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _point("atomic:before", path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            _point("atomic:write", path, fh, data)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _point("atomic:rename", path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _point("atomic:after", path)


def append_bytes(path: Path, data: bytes) -> int:
    """Append ``data`` to ``path`` (flushed and fsynced) and return the file's new size.

    Appending is what keeps a checkpoint's cost independent of the number of past rounds. A crash
    mid-append leaves a torn tail beyond the committed size, which a resume truncates.
    """
    _point("append:before", path)
    with open(path, "ab") as fh:
        _point("append:write", path, fh, data)
        fh.write(data)
        fh.flush()
        # fdatasync: the data and the new size, without the inode's timestamps. On ext4 here a
        # full fsync of a growing file cost 0.2 ms at 300 KB and 8 ms at 4.5 MB; this stays flat.
        os.fdatasync(fh.fileno())
        size = fh.tell()
    _point("append:after", path)
    return size


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    write_bytes(path, text.encode(), mode)


def write_json(path: Path, data: Any, mode: int | None = None) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n", mode)


def write_torch(path: Path, obj: Any, mode: int | None = None) -> None:
    import torch  # here, so that this module (used by the torch-free ledger) does not need it

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue(), mode)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist") and hasattr(obj, "dim"):  # a tensor
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, set | tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
