"""Synthetic stand-ins of the official shapes of FEMNIST and CIFAR-10, for when the real data is absent.

They exist so that ``configs/matrices/femnist_synthetic.yaml``, ``cifar10_synthetic.yaml`` and
``configs/privacy_cifar10_synthetic.yaml`` run anywhere with the same models, partitions and grids
as their real-data twins. They are separate, explicitly named datasets — a config says
``synthetic_femnist`` or ``synthetic_cifar10`` and every result carries that name — so a figure
from a stand-in is never mistaken for one from the real data; nothing falls back to them silently.

What they keep of the originals: the sample shape, the number of classes, the value range and
preprocessing (FEMNIST: one channel in [0, 1], not standardised, one natural client per writer;
CIFAR-10: three channels in [0, 1], standardised per channel with training-split statistics).
What they do not keep: the images. Each class is a smooth random template; a sample is its class
template, shifted (FEMNIST: by its writer's own offset and stroke strength, a feature skew across
writers as handwriting gives) and blurred with Gaussian noise. Accuracies, attack success and
privacy figures on them say how the pipeline behaves on data of those shapes, not how a model
does on the real benchmark.

References
----------
Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018 (FEMNIST: 62 classes, 28×28
grayscale, one client per writer). Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", 2009 (CIFAR-10: 10 classes, 32×32 colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedguard.api import require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource

FEMNIST_SHAPE = (1, 28, 28)
FEMNIST_CLASSES = 62  # 10 digits, 26 upper-case, 26 lower-case letters
CIFAR_SHAPE = (3, 32, 32)
CIFAR_CLASSES = 10


def smooth_templates(
    rng: np.random.Generator, classes: int, shape: tuple[int, int, int], cell: int
) -> np.ndarray:
    """One smooth random image per class in [0, 1]: ``(classes, C, H, W)``.

    Normal noise on a coarse grid of ``cell``-pixel squares, upsampled and blurred (3×3 box),
    then squashed by a logistic so values stay in (0, 1).
    """
    c, h, w = shape
    coarse = rng.normal(size=(classes, c, -(-h // cell), -(-w // cell)))
    fine = coarse.repeat(cell, axis=2).repeat(cell, axis=3)[:, :, :h, :w]
    return (1.0 / (1.0 + np.exp(-2.0 * box_blur(fine)))).astype(np.float32)


def box_blur(x: np.ndarray) -> np.ndarray:
    """3×3 mean over the last two axes (edges replicated)."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = x.shape[-2:]
    total = np.zeros_like(x)
    for i in range(3):
        for j in range(3):
            total += padded[..., i : i + h, j : j + w]
    return total / 9.0


def _labels(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """``n`` labels drawn with ``weights``; every class appears at least once (n ≥ classes)."""
    classes = len(weights)
    y = rng.choice(classes, size=n, p=weights / weights.sum())
    y[rng.permutation(n)[:classes]] = np.arange(classes)
    return y


@dataclass(frozen=True)
class SyntheticFemnist(DatasetSource):
    """A stand-in of FEMNIST's shape: 1×28×28 in [0, 1], 62 classes, one natural client per
    writer (``partition: natural``). Writers have between ½ and 3/2 × ``samples_per_writer``
    samples; digits are three times as frequent as each letter (as on the NIST forms). Each writer
    shifts every character by its own offset (up to ±2 pixels) and scales its strokes."""

    n_writers: int = 200
    samples_per_writer: int = 100
    noise: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_writers >= 2, "dataset.n_writers", "at least 2")
        require(self.samples_per_writer >= 2, "dataset.samples_per_writer", "at least 2")
        require(
            self.n_writers * self.samples_per_writer >= 2 * FEMNIST_CLASSES,
            "dataset.n_writers",
            f"with samples_per_writer, at least {2 * FEMNIST_CLASSES} samples (2 per class)",
        )
        require(0 <= self.noise <= 10, "dataset.noise", "between 0 and 10")

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        templates = smooth_templates(rng, FEMNIST_CLASSES, FEMNIST_SHAPE, cell=4)
        low, high = self.samples_per_writer // 2, (3 * self.samples_per_writer) // 2
        counts = rng.integers(max(low, 1), max(high, 2) + 1, size=self.n_writers)
        writers = np.repeat(np.arange(self.n_writers), counts)  # (N,)
        weights = np.array([3.0] * 10 + [1.0] * (FEMNIST_CLASSES - 10))
        y = _labels(rng, len(writers), weights)
        shift = rng.integers(-2, 3, size=(self.n_writers, 2))
        stroke = rng.uniform(0.6, 1.4, size=self.n_writers)
        x = templates[y]  # (N, 1, 28, 28)
        for writer in range(self.n_writers):  # one writer's style: shift and stroke strength
            rows = writers == writer
            moved = np.roll(x[rows], tuple(shift[writer]), axis=(2, 3))
            x[rows] = 0.5 + np.float32(stroke[writer]) * (moved - 0.5)
        x += self.noise * rng.standard_normal(size=x.shape, dtype=np.float32)
        x = np.clip(x, 0.0, 1.0, out=x)
        names = np.array([f"writer_{w:05d}" for w in writers])
        return from_arrays(x, y, "synthetic_femnist", FEMNIST_SHAPE, (0.0, 1.0), names)


@dataclass(frozen=True)
class SyntheticCifar10(DatasetSource):
    """A stand-in of CIFAR-10's shape: 3×32×32 in [0, 1], 10 balanced classes, standardised per
    channel with the training split's statistics (``normalize``, as ``cifar10``). Each sample is
    its class template under a random brightness change, shifted by up to ±3 pixels, plus noise."""

    n_samples: int = 12_000
    noise: float = 0.3
    normalize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self.n_samples >= 2 * CIFAR_CLASSES,
            "dataset.n_samples",
            f"at least {2 * CIFAR_CLASSES}",
        )
        require(0 <= self.noise <= 10, "dataset.noise", "between 0 and 10")

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        templates = smooth_templates(rng, CIFAR_CLASSES, CIFAR_SHAPE, cell=8)
        y = _labels(rng, self.n_samples, np.ones(CIFAR_CLASSES))
        brightness = rng.uniform(0.7, 1.3, size=(self.n_samples, 1, 1, 1)).astype(np.float32)
        x = templates[y] * brightness
        shifts = rng.integers(-3, 4, size=(self.n_samples, 2))
        for dy in range(-3, 4):  # 49 groups of samples with the same shift, not a loop per sample
            for dx in range(-3, 4):
                rows = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                x[rows] = np.roll(x[rows], (dy, dx), axis=(2, 3))
        x += self.noise * rng.standard_normal(size=x.shape, dtype=np.float32)
        x = np.clip(x, 0.0, 1.0, out=x)
        return from_arrays(
            x,
            y,
            "synthetic_cifar10",
            CIFAR_SHAPE,
            (0.0, 1.0),
            normalize="channel" if self.normalize else None,
        )


__all__ = ["SyntheticCifar10", "SyntheticFemnist", "box_blur", "smooth_templates"]
