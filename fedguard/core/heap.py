"""Keep freed memory in the process heap, so a training step does not page-fault it back.

glibc returns a freed block to the operating system when it was served by ``mmap`` (blocks
above a threshold that starts at 128 KiB and adapts) or when the free space at the top of the
heap exceeds a trim threshold. A DP-SGD step on the stacked plan allocates and frees several
megabytes of temporaries (per-sample convolution gradients, their channels-last copies, the
noise), so the next step's tensors — forward activations included — come back as fresh pages
that the kernel zero-fills on first touch. Measured on one thread, DP-SGD round of 10 clients,
interleaved with the non-private round: LeNet-5 4,401 page faults and 56.1 ms per round, the
CNN 3,902 faults and 40.8 ms; with the thresholds below 0 faults, 45.8 and 30.8 ms (the
non-private rounds 24.3–24.7 and 16.4 ms either way).

The non-private vectorized trainer does the same on a CPU: its (n, d) stack, gradient workspace
and activations are the same sizes every round (LeNet-5, 100 clients: 3–7% of a round's CPU
time in alternating processes; digits: no measurable change).

Blocks up to :data:`MMAP_THRESHOLD` then come from the heap and stay there once freed (up to
:data:`TRIM_THRESHOLD` of free space at its top): the process keeps its peak heap, as
allocators built for training (jemalloc, tcmalloc) do. Larger blocks are still mapped and
returned. Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: blocks below this size come from the heap (glibc's maximum for this setting: 32 MiB)
MMAP_THRESHOLD = 32 * 2**20
#: free space at the top of the heap kept rather than returned to the OS
TRIM_THRESHOLD = 2**30

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True where they are set
    (glibc), False elsewhere."""
    global _done
    if _done is None:
        _done = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _done = bool(
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _done


__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]
