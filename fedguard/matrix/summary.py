"""Matrix summaries: tidy CSV, mean ± std tables, the "which defenses held" decision, heatmaps.

Decision rule (stated in every output): a defense *held* against an attack when the one-sided
95% upper confidence bound of the accuracy drop it suffered — test accuracy without the attack
minus with it, paired by seed, Student t over seeds — is at most ``threshold`` (5 points by
default), and for backdoors the attack success rate's upper bound is at most 20%. With one seed
there is no interval: the verdict uses the point estimate and says so. Against privacy attacks a
defense held when the upper bound of the reconstruction PSNR is ≤ 20 dB (inversion) or of the
membership AUC is ≤ 0.55 (membership inference).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fedguard.matrix.config import NO_ATTACK

HELD_THRESHOLD = 0.05
BACKDOOR_THRESHOLD = 0.20
PSNR_THRESHOLD = 20.0  # dB: below it a reconstruction is not recognisable on 8×8 digits
AUC_THRESHOLD = 0.55


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


@dataclass(frozen=True)
class Verdict:
    defense: str
    attack: str
    axes: str
    measure: str  # what was bounded, in words
    mean: float
    upper: float  # one-sided 95% upper confidence bound (the point value with one seed)
    seeds: int
    held: bool
    note: str = ""

    def sentence(self) -> str:
        where = f" [{self.axes}]" if self.axes else ""
        bound = (
            f"upper 95% bound {self.upper:.3g}, {self.seeds} seeds"
            if self.seeds > 1
            else "one seed, no interval"
        )
        verb = "held against" if self.held else "did not hold against"
        return f"{self.defense} {verb} {self.attack}{where}: {self.measure} {self.mean:.3g} ({bound}){self.note}."


def _upper(values: np.ndarray, confidence: float = 0.95) -> float:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan
    if len(values) == 1:
        return float(values[0])
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() + stats.t.ppf(confidence, len(values) - 1) * sem)


def _values(group: pd.DataFrame, suffix: str) -> np.ndarray:
    return group[group.metric.str.endswith(suffix)]["value"].to_numpy(float)


def verdicts(tidy: pd.DataFrame, threshold: float = HELD_THRESHOLD) -> list[Verdict]:
    """One verdict per (defense, attack, setting); the rule depends on the attack's kind:
    reconstruction PSNR ≤ 20 dB for inversion, AUC ≤ 0.55 for membership inference, otherwise the
    accuracy drop (and backdoor success) rule of the module docstring."""
    out = []
    done = tidy[(tidy.status == "done") & (tidy.attack != NO_ATTACK)]
    for (defense, attack, axes), group in done.groupby(["defense", "attack", "setting"], sort=True):
        psnr, auc = _values(group, ".psnr_db"), _values(group, ".auc")
        if len(psnr):
            upper = _upper(psnr)
            out.append(
                Verdict(
                    defense,
                    attack,
                    axes,
                    "reconstruction PSNR (dB)",
                    float(np.nanmean(psnr)),
                    upper,
                    len(psnr),
                    upper <= PSNR_THRESHOLD,
                )
            )
            continue
        if len(auc):
            upper = _upper(auc)
            out.append(
                Verdict(
                    defense,
                    attack,
                    axes,
                    "membership AUC",
                    float(np.nanmean(auc)),
                    upper,
                    len(auc),
                    upper <= AUC_THRESHOLD,
                )
            )
            continue
        drops = group[group.metric == "accuracy_drop"]["value"].to_numpy(float)
        if len(drops) == 0:
            continue
        bd = group[group.metric == "backdoor_success"]["value"].to_numpy(float)
        bd_upper = _upper(bd) if len(bd) else None
        drop_upper = _upper(drops)
        held = drop_upper <= threshold and (bd_upper is None or bd_upper <= BACKDOOR_THRESHOLD)
        note = f"; backdoor success ≤ {100 * bd_upper:.0f}%" if bd_upper is not None else ""
        out.append(
            Verdict(
                defense,
                attack,
                axes,
                "accuracy drop",
                float(np.nanmean(drops)),
                drop_upper,
                len(drops),
                held,
                note,
            )
        )
    return out


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
    return mean[cols], std.reindex(columns=cols)


def status_cells(tidy: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(defense row, attack) → 'incompatible'/'failed' for cells without results."""
    bad = tidy[tidy.status != "done"]
    return {(r.defense, r.attack): r.status for r in bad.itertuples()}


def write_heatmaps(tidy: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    titles = {
        "test_accuracy": ("Test accuracy", "viridis"),
        "accuracy_drop": ("Attack success: accuracy drop vs no attack", "magma_r"),
        "backdoor_success": ("Backdoor attack success rate", "magma_r"),
        "epsilon": ("Privacy loss ε", "cividis_r"),
    }
    for metric, (title, cmap) in titles.items():
        mean, std = pivot(tidy, metric)
        if mean.empty:
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * mean.shape[1], 1.0 + 0.5 * mean.shape[0]))
        im = ax.imshow(mean.to_numpy(float), cmap=cmap, aspect="auto")
        ax.set_xticks(range(mean.shape[1]), mean.columns, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(mean.shape[0]), mean.index, fontsize=8)
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                v = mean.iat[i, j]
                if np.isfinite(v):
                    s = std.iat[i, j] if not std.empty else np.nan
                    txt = f"{v:.2f}" + (f"\n±{s:.2f}" if np.isfinite(s) else "")
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white")
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.04)
        with warnings.catch_warnings():  # long labels: the layout does what it can
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
        path = out_dir / f"heatmap_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
