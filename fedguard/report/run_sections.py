"""Report sections of a single run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedguard.metrics.attack_headlines import headline
from fedguard.metrics.detection import run_detection
from fedguard.metrics.test_accuracy import accuracy_text, backdoor_text
from fedguard.report import figures
from fedguard.report.html import bullet_list, image, key_values, paragraph, table
from fedguard.report.paths import checked_png, checked_roc, inside
from fedguard.storage.run_dir import RunDirectory


def _component(c: Any) -> str:
    if not c:
        return "—"
    params = ", ".join(f"{k}={v}" for k, v in sorted(c.get("params", {}).items()))
    return f"{c['name']}({params})" if params else c["name"]


PRIVACY_COLUMNS = (
    "psnr_db",
    "ssim",
    "mse",
    "label_accuracy",
    "auc",
    "tpr_at_1pct_fpr",
    "tpr_at_1pct_fpr_lower",
    "tpr_at_1pct_fpr_upper",
    "tpr_at_0.1pct_fpr",
    "n_members",
    "n_nonmembers",
    "from_aggregate",
)


def setup_section(run: RunDirectory) -> str:
    spec = run.spec().canonical()
    d, t, s, df, a = spec["data"], spec["training"], spec["server"], spec["defense"], spec["attack"]
    pairs = [
        ("dataset", _component(d["dataset"])),
        ("split", f"test {d['test_fraction']}, validation {d['validation_fraction']}"),
        ("partition", _component(d["partition"])),
        ("model", _component(spec["model"])),
        (
            "clients",
            f"{spec['clients']['n_clients']} ({spec['clients']['sampling']} sampling, "
            f"weighting by {spec['clients']['weighting']})",
        ),
        ("rounds", spec["rounds"]),
        (
            "local training",
            f"{t['algorithm']}, {t['local_epochs']} epoch(s), batch {t['batch_size']}, "
            f"lr {t['learning_rate']}, momentum {t['momentum']}, prox μ {t['prox_mu']}",
        ),
        ("server optimizer", f"{s['optimizer']} (lr {s['learning_rate']})"),
        (
            "aggregator",
            " + ".join([*map(_component, df["preaggregators"]), _component(df["aggregator"])]),
        ),
        ("client transforms", ", ".join(map(_component, df["client_transforms"])) or "—"),
        ("server transforms", ", ".join(map(_component, df["server_transforms"])) or "—"),
        ("transport", _component(df["transport"])),
        ("malicious clients", a["n_malicious"]),
        ("model attack", _component(a["model_attack"])),
        ("data attack", _component(a["data_attack"])),
        (
            "free-riders",
            f"{a['free_riders']['count']} × {a['free_riders']['name']}"
            if a["free_riders"]
            else "—",
        ),
        ("privacy attacks", ", ".join(map(_component, a["privacy_attacks"])) or "—"),
        ("seed", spec["seed"]),
        ("spec hash", run.spec().spec_hash()),
        ("fedguard version", _env(run.path).get("fedguard", "not recorded")),
        # slot: the ledger checks' status row (run-integrity work) goes here
    ]
    html = key_values(pairs)
    inside(run.path, "partition.json", "file")
    sizes = np.array([p["samples"] for p in run.partition()])
    if len(sizes):
        html += paragraph(
            f"Partition: {len(sizes)} clients, samples per client min {sizes.min()}, "
            f"median {int(np.median(sizes))}, max {sizes.max()}."
        )
    return html


def training_section(records: list[dict[str, Any]]) -> str:
    ev = [r for r in records if "test_accuracy" in r]
    if not ev:
        return paragraph("No evaluated rounds.")
    x = [r["round"] for r in ev]
    html = image(
        figures.curves(
            {"test accuracy": (x, [r["test_accuracy"] for r in ev])},
            "accuracy",
            "Test accuracy per round",
        ),
        "test accuracy per round",
    )
    html += image(
        figures.curves(
            {"test loss": (x, [r["test_loss"] for r in ev])}, "cross-entropy", "Test loss per round"
        ),
        "test loss per round",
    )
    if any("backdoor_success" in r for r in ev):
        html += image(
            figures.curves(
                {"backdoor success": (x, [r.get("backdoor_success", np.nan) for r in ev])},
                "rate",
                "Backdoor attack success per round",
            ),
            "backdoor success per round",
        )
    return html


def robustness_section(
    run: RunDirectory, records: list[dict[str, Any]], summary: dict[str, Any]
) -> str:
    det = run_detection(records)
    pairs = [
        ("malicious clients", ", ".join(map(str, summary.get("malicious_clients", []))) or "none"),
        (
            "free-rider clients",
            ", ".join(map(str, summary.get("free_rider_clients", []))) or "none",
        ),
        ("final test accuracy", accuracy_text(summary) or summary.get("final_test_accuracy")),
        ("backdoor success", backdoor_text(summary) or summary.get("backdoor_success")),
        ("detection TPR (pooled over rounds)", det.get("detection_tpr")),
        ("detection FPR (pooled over rounds)", det.get("detection_fpr")),
        ("detection AUROC of the rule's scores (mean over rounds)", det.get("detection_auroc")),
        ("first round with a true flag", det.get("rounds_to_detection")),
    ]
    html = key_values(pairs)
    attacks = summary.get("privacy_attacks") or {}
    if attacks:
        rows = [
            (name, k, v)
            for name, m in attacks.items()
            for k, v in m.items()
            if isinstance(v, int | float)
        ]
        headlines = [(name, *headline(m)) for name, m in attacks.items() if isinstance(m, dict)]
        html += (
            "<h3>Privacy attacks</h3>"
            + paragraph(
                "Mean over the rounds each attack observed, beside what a trivial attacker gets."
            )
            + table(["attack", "result", "baseline and caveats"], headlines)
            + "<h4>Every metric</h4>"
            + table(["attack", "metric", "value"], rows)
        )
    rocs: dict[str, tuple[list[float], list[float]]] = {}
    for caption, rel in sorted((summary.get("artifacts") or {}).items()):
        path = inside(run.path, rel)
        if path.suffix == ".png":
            html += image(figures.file_data_uri(checked_png(path)), caption)
        elif path.name.endswith("_roc.json"):
            rocs[caption.split(":")[0]] = checked_roc(path)
    if rocs:
        html += image(figures.roc_loglog(rocs), "membership inference ROC (log-log axes)")
    return html


def contribution_section(run: RunDirectory) -> str | None:
    inside(run.path, "contributions.csv", "file")
    frame = run.contributions()
    if frame is None:
        return None
    cols = [c for c in ("client", "value", "lower", "upper", "rank", "flag") if c in frame.columns]
    html = table(cols, frame[cols].itertuples(index=False))
    if {"value", "lower", "upper"} <= set(frame.columns):
        html += image(
            figures.bars_with_errors(
                [str(c) for c in frame["client"]],
                frame["value"],
                frame["lower"],
                frame["upper"],
                "Client contributions with 95% intervals",
            ),
            "client contribution values with 95% intervals",
        )
    return html


def _env(path: Path) -> dict[str, Any]:
    inside(path, "env.json", "file")
    return RunDirectory(path).environment_info()


def environment_section(path: Path) -> str:
    return key_values(sorted(_env(path).items()))


def findings(records: list[dict[str, Any]], summary: dict[str, Any], privacy_line: str) -> str:
    items = []
    acc = summary.get("final_test_accuracy")
    if acc is not None:
        items.append(
            f"Final test accuracy after {summary.get('rounds_completed')} rounds: "
            f"{accuracy_text(summary) or f'{acc:.3f}'}."
        )
    if summary.get("malicious_clients"):
        det = run_detection(records)
        if "detection_tpr" in det:
            items.append(
                f"The defense flagged {100 * det['detection_tpr']:.0f}% of malicious participations "
                f"with a {100 * det.get('detection_fpr', 0):.0f}% false-positive rate."
            )
    for name, metrics in (summary.get("privacy_attacks") or {}).items():
        if isinstance(metrics, dict):
            result, notes = headline(metrics)
            items.append(f"Privacy attack {name}: {result} ({notes}).")
    if summary.get("backdoor_success") is not None:
        items.append(f"Backdoor success rate at the end: {backdoor_text(summary)}.")
    items.append(privacy_line)
    if summary.get("saved_updates"):
        items.append(
            "Per-round client updates were saved (owner-only): they are exactly what DP and secure aggregation protect."
        )
    return bullet_list(items)


def evidence_section(run: RunDirectory) -> tuple[str, str]:
    """The report's first line — which checks of the run's evidence passed (seal, cross-checks
    of the ledger against spec.yaml and rounds.jsonl, signature, verify) — and, for a later
    section, each check. A failed cross-check or an invalid signature raises (no report)."""
    from html import escape

    from fedguard.audit.evidence import gather_evidence

    evidence = gather_evidence(run)
    rows = [[c.name, c.status.replace("_", " "), c.detail] for c in evidence.cross_checks.checks]
    line = f'<p class="statement" data-evidence>{escape(evidence.line())}</p>'
    details = table(["cross-check", "status", "detail"], rows) + paragraph(
        "The SHA-256 seal protects against accidental corruption only: anyone can recompute "
        "it. The cross-checks compare the ledger with spec.yaml and rounds.jsonl; a signature "
        "attributes the folder to a key and proves nothing about its honesty; "
        "'fedguard verify RUN' replays the run on CPU and is the strongest evidence."
    )
    return line, details
