"""Matplotlib figures rendered to base64 PNG data URIs (the report embeds everything)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str,
    title: str,
    from_zero: bool = False,
) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", markersize=2.5, linewidth=1.3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    if from_zero:
        ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, ncol=2)
    return to_data_uri(fig)


def roc_loglog(curves_by_name: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> str:
    """Membership-inference ROC on log-log axes (low-FPR regime visible), with the chance line."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    lo = 1e-4
    for name, (fpr, tpr) in curves_by_name.items():
        ax.plot([max(f, lo) for f in fpr], [max(t, lo) for t in tpr], label=name)
    ax.plot([lo, 1], [lo, 1], "k--", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return to_data_uri(fig)


def bars_with_errors(
    labels: Sequence[str],
    values: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    title: str,
) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    err = [
        [v - lo for v, lo in zip(values, lower, strict=True)],
        [hi - v for v, hi in zip(values, upper, strict=True)],
    ]
    ax.bar(range(len(values)), values, yerr=err, capsize=3, color="#4c72b0")
    ax.axhline(0, color="k", linewidth=0.7)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("client")
    ax.set_ylabel("contribution value")
    ax.set_title(title, fontsize=10)
    return to_data_uri(fig)


def small_multiples(
    panels: Mapping[tuple[str, str], Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    ylabel: str,
) -> str:
    """One panel per (row, column) — defense × attack — holding one line per seed, shared axes:
    every run is drawn, none hidden behind a 12-colour cycle."""
    rows = sorted({r for r, _ in panels})
    cols = sorted({c for _, c in panels})
    seeds = sorted({s for lines in panels.values() for s in lines})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(seeds)}
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(1.0 + 1.55 * len(cols), 0.6 + 1.2 * len(rows)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            for seed, (x, y) in panels.get((r, c), {}).items():
                ax.plot(x, y, linewidth=1.0, color=colours[seed], label=f"seed {seed}")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(c, fontsize=6.5)
            if j == 0:
                ax.set_ylabel(f"{r}\n{ylabel}", fontsize=6.5)
            if i == len(rows) - 1:
                ax.set_xlabel("round", fontsize=6.5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=len(seeds))
    fig.suptitle(f"{ylabel} per round: every run (rows: defense, columns: attack)", fontsize=9)
    return to_data_uri(fig)
