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
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str, title: str
) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", markersize=2.5, linewidth=1.3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
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
    ax.set_title(title, fontsize=10)
    return to_data_uri(fig)
