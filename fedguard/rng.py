"""Independent random streams per (seed, round, client, component).

Every random draw in fedguard comes from a generator made here, never from the global RNG, so
adding an attack or a defense never shifts anyone else's draws, and the vectorized and sequential
trainers see exactly the same batches.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

GLOBAL = -1  # "client" index for streams that belong to no client (server, partitioner, ...)


def stream_seed(seed: int, round_index: int, client: int, component: str) -> int:
    """64-bit seed of the stream named by (seed, round, client, component)."""
    tag = zlib.crc32(component.encode())
    entropy = [seed & 0xFFFFFFFF, round_index + 1, client + 2, tag]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def torch_generator(
    seed: int, round_index: int, client: int, component: str, device: str = "cpu"
) -> torch.Generator:
    """A fresh ``torch.Generator`` for one stream."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, round_index, client, component))
    return gen


def numpy_generator(seed: int, round_index: int, client: int, component: str) -> np.random.Generator:
    """A fresh ``numpy.random.Generator`` for one stream."""
    return np.random.default_rng(stream_seed(seed, round_index, client, component))
