"""Matrix summaries: tidy CSV, mean ± std tables and heatmaps.

Which defenses held is decided in one place, :mod:`fedguard.matrix.verdict`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedguard.matrix.config import NO_ATTACK, NO_DEFENSE


def tidy_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell and metric (the ``matrix.csv`` layout), with derived accuracy drops."""
    cells = pd.DataFrame(
        [
            {
                "key": r["key"],
                "attack": r["attack"],
                "defense": r["defense"],
                "seed": r["seed"],
                "setting": ", ".join(f"{k}={v}" for k, v in r["axes"]),
                "status": r["status"],
                "error": (r["error"] or "").splitlines()[0] if r["error"] else "",
                **{k: v for k, v in r["metrics"].items() if isinstance(v, int | float)},
            }
            for r in rows
        ]
    )
    if cells.empty:
        return pd.DataFrame(
            columns=["attack", "defense", "seed", "setting", "status", "metric", "value"]
        )
    if "test_accuracy" in cells:
        base = cells[cells.attack == NO_ATTACK].set_index(["defense", "seed", "setting"])[
            "test_accuracy"
        ]
        idx = pd.MultiIndex.from_frame(cells[["defense", "seed", "setting"]])
        cells["accuracy_drop"] = base.reindex(idx).to_numpy() - cells["test_accuracy"].to_numpy()
    ident = ["attack", "defense", "seed", "setting", "status", "error"]
    metrics = [c for c in cells.columns if c not in ident and c != "key"]
    tidy = cells.melt(id_vars=ident, value_vars=metrics, var_name="metric", value_name="value")
    incompatible = cells[cells.status != "done"][ident].assign(metric="status", value=np.nan)
    tidy = pd.concat([tidy[tidy.status == "done"].dropna(subset=["value"]), incompatible])
    return tidy.sort_values(["defense", "attack", "seed", "metric"]).reset_index(drop=True)


def read_matrix_csv(path: Path) -> pd.DataFrame:
    """``matrix.csv`` back as the tidy frame it was written from (empty settings stay "")."""
    frame = pd.read_csv(path, dtype={"setting": str, "error": str}, keep_default_na=False)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame["seed"] = pd.to_numeric(frame["seed"])
    return frame


def pivot(tidy: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, std) over seeds; rows = defense [+ axes], columns = attack."""
    sel = tidy[(tidy.metric == metric) & (tidy.status == "done")]
    if sel.empty:
        return pd.DataFrame(), pd.DataFrame()
    sel = sel.assign(
        row=np.where(
            sel["setting"] != "", sel["defense"] + " [" + sel["setting"] + "]", sel["defense"]
        )
    )
    grouped = sel.groupby(["row", "attack"])["value"]
    mean = grouped.mean().unstack("attack")
    std = grouped.std(ddof=1).unstack("attack")
    cols = [NO_ATTACK, *sorted(c for c in mean.columns if c != NO_ATTACK)]
    cols = [c for c in cols if c in mean.columns]
    # the undefended baseline first, then the defenses in name order
    rows = sorted(mean.index, key=lambda r: (r.split(" [")[0] != NO_DEFENSE, r))
    return mean.loc[rows, cols], std.reindex(index=rows, columns=cols)


@dataclass(frozen=True)
class MatrixTables:
    """A finished matrix as the terminal table shows it: its name and metric, the stored rows,
    the tidy frame and the verdicts (``fedguard.matrix.verdict.Verdict``)."""

    name: str
    metric: str
    rows: list[dict[str, Any]]
    tidy: pd.DataFrame
    verdicts: list[Any]


def status_cells(tidy: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(defense row, attack) → 'incompatible'/'failed' for cells without results."""
    bad = tidy[tidy.status != "done"]
    return {(r.defense, r.attack): r.status for r in bad.itertuples()}


def write_heatmaps(tidy: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per metric. Accuracy drops use a diverging map centred at zero (a cell the attack
    did not change is neutral, not alarming); every annotation picks black or white text from the
    luminance of the colour beneath it."""
    # the object-oriented API with the Agg canvas: no pyplot (its import and figure manager cost
    # a matrix more CPU than drawing the heatmaps), no global backend switch
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import CenteredNorm, Normalize
    from matplotlib.figure import Figure

    written = []
    titles = {
        "test_accuracy": ("Test accuracy (mean ± std over seeds)", "viridis", False),
        "accuracy_drop": (
            "Accuracy drop vs the same defense without attack (accuracy units; 0 = no effect)",
            "RdBu_r",
            True,
        ),
        "backdoor_success": ("Backdoor attack success rate", "magma_r", False),
        "epsilon": ("Privacy loss ε (at each run's δ)", "cividis_r", False),
    }
    for metric, (title, cmap_name, centred) in titles.items():
        mean, std = pivot(tidy, metric)
        if mean.empty:
            continue
        values = mean.to_numpy(float)
        finite = values[np.isfinite(values)]
        norm: Normalize = (
            CenteredNorm(vcenter=0.0, halfrange=max(float(np.abs(finite).max()), 1e-3))
            if centred and finite.size
            else Normalize(*(np.nanmin(values), np.nanmax(values)) if finite.size else (0, 1))
        )
        cmap = colormaps[cmap_name]
        fig = Figure(figsize=(2.2 + 1.3 * mean.shape[1], 1.2 + 0.5 * mean.shape[0]))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        im = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(mean.shape[1]), mean.columns, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(mean.shape[0]), mean.index, fontsize=8)
        ax.set_xlabel("attack")
        ax.set_ylabel("defense")
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                v = values[i, j]
                if np.isfinite(v):
                    s = std.iat[i, j] if not std.empty else np.nan
                    txt = f"{v:.2f}" + (f"\n±{s:.2f}" if np.isfinite(s) else "")
                    colour = text_colour(cmap(norm(v)))
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7, color=colour)
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="black")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.04, label=metric.replace("_", " "))
        with warnings.catch_warnings():  # long labels: the layout does what it can
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
        path = out_dir / f"heatmap_{metric}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def text_colour(rgba: tuple[float, ...]) -> str:
    """Black on light colours, white on dark ones (WCAG relative luminance, threshold 0.179)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "black" if luminance > 0.179 else "white"
