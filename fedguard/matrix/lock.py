"""One ``fedguard matrix`` per output folder: a second one exits 2 naming the holder's PID.

The lock is ``flock`` on ``matrix.lock`` in the folder: the kernel releases it when the holder
exits for any reason (SIGKILL included), so a stale lock left by a dead process is simply taken
over. The file holds the holder's PID, for the message only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fedguard.errors import UserError

LOCK_FILE = "matrix.lock"


@contextlib.contextmanager
def matrix_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise UserError(
                f"another fedguard matrix (PID {_holder(fd)}) is running on {folder}; wait for "
                "it to finish or stop it, or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text if text.isdigit() else "unknown"
