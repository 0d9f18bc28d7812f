"""Report sections of a matrix directory: the answer first (summary), then the setup and the
evidence (results, curves of every run, privacy), the environment, and the findings with the rule."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedguard.matrix.store import ResultStore
from fedguard.matrix.summary import pivot, tidy_frame
from fedguard.matrix.verdict import Verdict, rule_text, verdicts
from fedguard.report import figures
from fedguard.report.html import bullet_list, image, key_values, paragraph, table
from fedguard.report.lm_privacy_section import has_text_attacks, lm_privacy_html
from fedguard.report.matrix_summary import base_spec, setup_html, summary_html
from fedguard.storage.run_dir import environment

PRIVACY_SUFFIXES = (".psnr_db", ".ssim", ".label_accuracy", ".auc", ".tpr_at_1pct_fpr")
AUROC_NOTE = (
    "A detection AUROC below 0.5 means the defense's scores ranked the attackers as less "
    "suspicious than honest clients (worse than chance); 0.5 is chance, 1 perfect detection."
)


def metric_table(tidy: pd.DataFrame, metric: str) -> str:
    mean, std = pivot(tidy, metric)
    if mean.empty:
        return ""
    body = [
        [
            idx,
            *(
                f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}" if np.isfinite(m) else "n/a"
                for m, s in zip(mean.loc[idx], std.loc[idx], strict=True)
            ),
        ]
        for idx in mean.index
    ]
    html = f"<h3>{metric.replace('_', ' ')} (mean ± std over seeds)</h3>" + table(
        ["defense \\ attack", *mean.columns], body
    )
    if metric == "detection_auroc" and (mean.to_numpy(float) < 0.5).any():
        html += paragraph(AUROC_NOTE, "warn")
    return html


def results_html(path: Path, tidy: pd.DataFrame, rows: list[dict[str, Any]]) -> str:
    heatmaps = _heatmaps(tidy)
    privacy_metrics = sorted(m for m in set(tidy["metric"]) if m.endswith(PRIVACY_SUFFIXES))
    html = ""
    for metric in (
        "test_accuracy",
        "accuracy_drop",
        "backdoor_success",
        "epsilon",
        "detection_auroc",
        *privacy_metrics,
    ):
        part = metric_table(tidy, metric)
        if not part:
            continue
        html += part
        if metric in heatmaps:
            html += image(heatmaps[metric], f"heatmap of {metric.replace('_', ' ')}")
    incompatible = sorted(
        {(r["defense"], r["attack"], r["error"]) for r in rows if r["status"] == "incompatible"}
    )
    if incompatible:
        html += "<h3>Incompatible cells</h3>" + table(["defense", "attack", "reason"], incompatible)
    failed = [
        (r["defense"], r["attack"], r["seed"], (r["error"] or "").splitlines()[0])
        for r in rows
        if r["status"] == "failed"
    ]
    if failed:
        html += "<h3>Failed cells</h3>" + table(["defense", "attack", "seed", "error"], failed)
    return html


def curves_html(rows: list[dict[str, Any]]) -> str:
    panels: dict[tuple[str, str], dict[str, tuple[list[float], list[float]]]] = {}
    for r in rows:
        ev = [x for x in r["records"] if "test_accuracy" in x]
        if r["status"] == "done" and ev:
            panels.setdefault((r["defense"], r["attack"]), {})[str(r["seed"])] = (
                [x["round"] for x in ev],
                [x["test_accuracy"] for x in ev],
            )
    if not panels:
        return paragraph("No finished cells.")
    runs = sum(len(v) for v in panels.values())
    return image(
        figures.small_multiples(panels, "test accuracy"),
        f"test accuracy per round of all {runs} runs: one panel per defense × attack, one line per seed",
    )


def privacy_html(tidy: pd.DataFrame) -> str:
    eps_mean, _ = pivot(tidy, "epsilon")
    if eps_mean.empty:
        return paragraph(
            "No cell ran a differential-privacy mechanism: no formal privacy guarantee (ε = ∞).",
            "statement warn",
        )
    return paragraph(
        "ε per cell at each run's δ, from its privacy ledger (RDP accountant; `fedguard audit RUN "
        "--accountant all` compares accountants for one run).",
        "statement",
    ) + table(
        ["defense", *eps_mean.columns], [[i, *eps_mean.loc[i].tolist()] for i in eps_mean.index]
    )


def findings_html(tidy: pd.DataFrame, vs: list[Verdict]) -> str:
    if not vs:
        return paragraph(rule_text(tidy)) + paragraph("No attacked cells finished.")
    return paragraph(rule_text(tidy)) + bullet_list(v.sentence() for v in vs)


def _heatmaps(tidy: Any) -> dict[str, str]:
    """Heatmaps drawn again from the results, as data URIs: the PNG files in the folder are
    outputs for people, and a damaged or swapped one must not reach the report."""
    from fedguard.matrix.summary import write_heatmaps

    with tempfile.TemporaryDirectory() as tmp:
        return {
            p.stem.removeprefix("heatmap_"): figures.file_data_uri(p)
            for p in write_heatmaps(tidy, Path(tmp))
        }


def matrix_report(path: Path, redact: bool = False) -> tuple[str, list[Any]]:
    from fedguard.report.section import Section

    store = ResultStore(path / "results.sqlite", read_only=True)
    try:
        meta = store.meta()
        keys = set(meta.get("keys", [])) or None
        rows = store.rows(keys)
        specs = store.specs()
        versions = {k: v for k, v in store.versions().items() if keys is None or k in keys}
    finally:
        store.close()
    tidy = tidy_frame(rows)
    vs = verdicts(tidy)
    spec = base_spec(specs, rows)
    sections = [
        Section("summary", "Summary: which defenses held", summary_html(vs, rows, spec)),
        Section("setup", "Setup", setup_html(path, spec, rows, versions)),
        Section("attacks", "Attack results", results_html(path, tidy, rows)),
        Section("training", "Accuracy of every run", curves_html(rows)),
    ]
    if has_text_attacks(tidy):
        sections.append(
            Section("lm_privacy", "Language-model privacy", lm_privacy_html(tidy, rows, redact))
        )
    sections += [
        Section("privacy", "Privacy", privacy_html(tidy)),
        Section("environment", "Environment", key_values(sorted(environment().items()))),
        Section("findings", "Findings: the rule and every verdict", findings_html(tidy, vs)),
    ]
    return meta.get("name", path.name), sections
