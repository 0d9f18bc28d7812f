"""Report sections of a matrix directory."""

from __future__ import annotations

import tempfile
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from fedguard.matrix.store import ResultStore
from fedguard.matrix.summary import HELD_THRESHOLD, pivot, tidy_frame, verdicts, write_heatmaps
from fedguard.report import figures
from fedguard.report.html import bullet_list, image, key_values, paragraph, table
from fedguard.storage.run_dir import environment


def _heatmaps(tidy: Any) -> dict[str, str]:
    """Heatmaps drawn again from the results, as data URIs: the PNG files in the folder are
    outputs for people, and a damaged or swapped one must not reach the report."""
    with tempfile.TemporaryDirectory() as tmp:
        return {
            p.stem.removeprefix("heatmap_"): figures.file_data_uri(p)
            for p in write_heatmaps(tidy, Path(tmp))
        }


def matrix_report(path: Path) -> tuple[str, list[Any]]:
    from fedguard.report.builder import Section

    store = ResultStore(path / "results.sqlite", read_only=True)
    try:
        meta = store.meta()
        rows = store.rows(set(meta.get("keys", [])) or None)
    finally:
        store.close()
    tidy = tidy_frame(rows)
    heatmaps = _heatmaps(tidy)
    name = meta.get("name", path.name)
    done = [r for r in rows if r["status"] == "done"]
    setup = key_values(
        [
            ("cells", len(rows)),
            ("attacks", ", ".join(sorted({r["attack"] for r in rows}))),
            ("defenses", ", ".join(sorted({r["defense"] for r in rows}))),
            ("seeds", ", ".join(map(str, sorted({r["seed"] for r in rows})))),
            (
                "done / failed / incompatible",
                f"{len(done)} / {sum(r['status'] == 'failed' for r in rows)} / "
                f"{sum(r['status'] == 'incompatible' for r in rows)}",
            ),
        ]
    )
    results = ""
    privacy_metrics = sorted(
        m
        for m in set(tidy["metric"])
        if m.endswith((".psnr_db", ".ssim", ".label_accuracy", ".auc", ".tpr_at_1pct_fpr"))
    )
    for metric in (
        "test_accuracy",
        "accuracy_drop",
        "backdoor_success",
        "epsilon",
        "detection_auroc",
        *privacy_metrics,
    ):
        mean, std = pivot(tidy, metric)
        if mean.empty:
            continue
        body = [
            [
                idx,
                *(
                    f"{m:.3f} ± {s:.3f}"
                    if np.isfinite(s)
                    else f"{m:.3f}"
                    if np.isfinite(m)
                    else "n/a"
                    for m, s in zip(mean.loc[idx], std.loc[idx], strict=True)
                ),
            ]
            for idx in mean.index
        ]
        results += f"<h3>{escape(metric.replace('_', ' '))}</h3>" + table(
            ["defense \\ attack", *mean.columns], body
        )
        if metric in heatmaps:
            results += image(heatmaps[metric], f"heatmap of {metric.replace('_', ' ')}")
    incompatible = sorted(
        {(r["defense"], r["attack"], r["error"]) for r in rows if r["status"] == "incompatible"}
    )
    if incompatible:
        results += "<h3>Incompatible cells</h3>" + table(
            ["defense", "attack", "reason"], incompatible
        )
    failed = [
        (r["defense"], r["attack"], r["seed"], (r["error"] or "").splitlines()[0])
        for r in rows
        if r["status"] == "failed"
    ]
    if failed:
        results += "<h3>Failed cells</h3>" + table(["defense", "attack", "seed", "error"], failed)

    curves: dict[str, tuple[list[float], list[float]]] = {}
    for r in done:
        ev = [x for x in r["records"] if "test_accuracy" in x]
        label = f"{r['defense']} × {r['attack']}"
        if ev and label not in curves:
            curves[label] = ([x["round"] for x in ev], [x["test_accuracy"] for x in ev])
    acc_html = (
        image(
            figures.curves(
                dict(list(curves.items())[:12]), "accuracy", "Test accuracy per round (first seed)"
            ),
            "accuracy curves",
        )
        if curves
        else paragraph("No finished cells.")
    )

    eps_mean, _ = pivot(tidy, "epsilon")
    if eps_mean.empty:
        privacy = paragraph(
            "No cell ran a differential-privacy mechanism: no formal privacy guarantee (ε = ∞).",
            "statement warn",
        )
    else:
        privacy = paragraph(
            "ε per cell at each run's δ, from the privacy ledger (see the ε heatmap above).",
            "statement",
        )
        privacy += table(
            ["defense", *eps_mean.columns], [[i, *eps_mean.loc[i].tolist()] for i in eps_mean.index]
        )

    vs = verdicts(tidy)
    rule = (
        f"Decision rule: a defense held when the upper 95% confidence bound (Student t over seeds, "
        f"paired with the same defense without attack) of its accuracy drop is ≤ {HELD_THRESHOLD:g} "
        "and, for backdoors, the attack success bound is ≤ 0.2; against gradient inversion when "
        "the bound on reconstruction PSNR is ≤ 20 dB, against membership inference when the bound "
        "on AUC is ≤ 0.55."
    )
    findings = paragraph(rule) + (
        bullet_list(v.sentence() for v in vs) if vs else paragraph("No attacked cells finished.")
    )
    held = [v for v in vs if v.held]
    if vs:
        findings += paragraph(f"{len(held)} of {len(vs)} defense × attack pairs held.")
    sections = [
        Section("setup", "Setup", setup),
        Section("training", "Accuracy", acc_html),
        Section("privacy", "Privacy", privacy),
        Section("attacks", "Attack results", results),
        Section("environment", "Environment", key_values(sorted(environment().items()))),
        Section("findings", "Findings", findings),
    ]
    return name, sections
