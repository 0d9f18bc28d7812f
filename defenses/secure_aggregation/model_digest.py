"""The SHA-256 digest of a flat parameter vector, as a client computes it of what it received.

The bytes hashed are the parameters' dtype name, their count and their little-endian values on
the CPU, so two clients agree on the digest exactly when they hold bit-identical models.
"""

from __future__ import annotations

import hashlib

import numpy as np
from torch import Tensor


def model_digest(params: Tensor) -> bytes:
    """32-byte SHA-256 of ``params`` ``(d,)``."""
    values = params.detach().to("cpu").contiguous().numpy()
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    header = f"{values.dtype.name}:{values.size}:".encode()
    return hashlib.sha256(header + np.ascontiguousarray(little).tobytes()).digest()


__all__ = ["model_digest"]
