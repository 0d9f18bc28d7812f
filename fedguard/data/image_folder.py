"""Image folders: one sub-folder per class (``root/<class>/<image>``), decoded with Pillow.

Pillow's decompression-bomb limit stays on, and its warning is treated as an error: a data folder
from elsewhere cannot exhaust memory with a tiny file that decodes to gigapixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedguard.api import require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource
from fedguard.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]; any decoding problem is one sentence naming the file."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                img = opened.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConfigError(
            f"image {path} is larger than Pillow's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS} pixels); fedguard does not decode it."
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ConfigError(f"image {path} cannot be decoded ({type(exc).__name__}).") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@dataclass(frozen=True)
class ImageFolderDataset(DatasetSource):
    """Class-per-sub-folder images; class names are the sub-folder names (sorted).

    ``channels`` is 1 (grayscale) or 3 (RGB); ``image_size`` ``[height, width]`` resizes every
    image, otherwise all images must share one size. ``normalize`` standardises each channel with
    the training split's statistics only.
    """

    path: str = ""
    channels: int = 3
    image_size: tuple[int, ...] = ()
    normalize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))
        require(bool(self.path), "dataset.path", "a folder with one sub-folder per class")
        require(self.channels in (1, 3), "dataset.channels", "1 (grayscale) or 3 (RGB)")
        require(
            self.image_size == () or (len(self.image_size) == 2 and min(self.image_size) >= 1),
            "dataset.image_size",
            "[height, width] in pixels (or omit it)",
        )

    def load(self) -> Dataset:
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"dataset.path {self.path!r} is not a folder.")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        size = (self.image_size[0], self.image_size[1]) if self.image_size else None
        images, labels = [], []
        for label, cls in enumerate(classes):
            for file in sorted((root / cls).iterdir()):
                if file.suffix.lower() in EXTENSIONS:
                    images.append(decode(file, "L" if self.channels == 1 else "RGB", size))
                    labels.append(label)
        if not images:
            raise ConfigError(
                f"dataset.path {self.path!r} holds no images in class sub-folders "
                f"({', '.join(EXTENSIONS)})."
            )
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ConfigError(
                f"dataset.path {self.path!r} holds images of {len(shapes)} different sizes; set "
                "dataset.image_size to [height, width] to resize them."
            )
        x = np.stack(images)
        return from_arrays(
            x,
            np.asarray(labels),
            root.name,
            tuple(int(s) for s in x.shape[1:]),
            (0.0, 1.0),
            normalize="channel" if self.normalize else None,
        )
