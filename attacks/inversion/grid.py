"""Image grids of reconstructions next to the private originals, for reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attacks.inversion.reconstruction import AGGREGATE_ID, InversionOutput
from fedguard.errors import ConfigError
from fedguard.metrics.privacy_attack_metrics import hungarian_match
from fedguard.types import Truth


def reconstruction_grid(
    reconstructed: Tensor,
    original: Tensor,
    image_shape: tuple[int, int, int],
    data_range: tuple[float, float] = (0.0, 1.0),
    pad: int = 1,
) -> np.ndarray:
    """Two rows of tiles: originals on top, their Hungarian-matched reconstructions below.

    Values are mapped from ``data_range`` to [0, 1]; tiles are separated by ``pad`` pixels of 1.
    Returns ``(2·(H + pad) + pad, k·(W + pad) + pad)`` for one channel, ``(..., 3)`` for three.
    """
    channels, height, width = image_shape
    rows, cols = hungarian_match(reconstructed, original)
    order = torch.argsort(cols)  # originals in their own order
    rows, cols = rows[order], cols[order]
    low, high = data_range
    top = original[cols].reshape(-1, channels, height, width).double()
    bottom = reconstructed[rows].reshape(-1, channels, height, width).double()
    k = top.shape[0]
    grid = torch.ones(
        channels, 2 * (height + pad) + pad, k * (width + pad) + pad, dtype=torch.float64
    )
    for r, images in enumerate((top, bottom)):
        y0 = pad + r * (height + pad)
        for i in range(k):
            x0 = pad + i * (width + pad)
            tile = ((images[i] - low) / (high - low)).clamp(0.0, 1.0)
            grid[:, y0 : y0 + height, x0 : x0 + width] = tile
    array = grid.permute(1, 2, 0).numpy()
    return array[..., 0] if channels == 1 else array


def save_reconstruction_grid(output: InversionOutput, truth: Truth, path: str | Path) -> Path:
    """Write the first reconstruction of ``output`` and its originals as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    if output.image_shape is None:
        raise ConfigError("an image grid needs image data; this reconstruction is tabular.")
    rec = output.reconstructions[0]
    if rec.client_id == AGGREGATE_ID:
        batches = list(truth.private_batches.values())
        original = torch.cat([b[0].reshape(b[0].shape[0], -1) for b in batches])
    else:
        original = truth.private_batches[rec.client_id][0]
    original = original.reshape(original.shape[0], -1)
    grid = reconstruction_grid(
        rec.inputs.reshape(rec.inputs.shape[0], -1),
        original,
        output.image_shape,
        output.data_range or (float(original.min()), float(original.max())),
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(target, grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0)
    return target


__all__ = ["reconstruction_grid", "save_reconstruction_grid"]
