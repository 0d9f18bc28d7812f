"""Heatmaps a reader can trust: drops on a diverging map centred at zero, legible annotations."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from fedguard.matrix.summary import text_colour, write_heatmaps

matplotlib.use("Agg")


def test_text_colour_follows_the_luminance_beneath() -> None:
    import matplotlib.pyplot as plt

    assert text_colour((1.0, 1.0, 0.6, 1.0)) == "black"  # pale yellow: the old white-on-yellow
    assert text_colour((0.05, 0.05, 0.3, 1.0)) == "white"
    viridis = plt.get_cmap("viridis")
    assert text_colour(viridis(0.0)) == "white" and text_colour(viridis(1.0)) == "black"


def test_drop_heatmap_is_centred_at_zero(tmp_path: Path) -> None:
    from PIL import Image

    rows = []
    # a negative drop (better under attack, like krum's −0.33) used to push 0 mid-scale: red
    for defense, drop in (("mean", 0.6), ("median", 0.0), ("krum", -0.3)):
        for attack, acc in (("none", 0.6), ("x", 0.6 - drop)):
            rows.append((defense, attack, acc))
    tidy = pd.DataFrame(
        [
            {
                "attack": a,
                "defense": d,
                "seed": 0,
                "setting": "",
                "status": "done",
                "error": "",
                "metric": m,
                "value": v,
            }
            for d, a, acc in rows
            for m, v in (("test_accuracy", acc), ("accuracy_drop", 0.6 - acc))
        ]
    )
    (path,) = [p for p in write_heatmaps(tidy, tmp_path) if p.name == "heatmap_accuracy_drop.png"]
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    # the "none" column (no drop) is neutral: near-white pixels dominate it, no alarm red
    reddish = (img[..., 0] > 150) & (img[..., 1] < 130) & (img[..., 2] < 130)
    neutral = (img.min(axis=-1) > 225) & (img.max(axis=-1) - img.min(axis=-1) < 25)
    assert reddish.any()  # the real drop (0.6) is red
    w = img.shape[1]
    # left quarter of the plot area holds the zero-drop cells: no saturated red there
    assert not reddish[:, : w // 3].any()
    assert neutral[:, : w // 3].mean() > 0.5
