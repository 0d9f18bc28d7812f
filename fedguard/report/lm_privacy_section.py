"""The language-model privacy section of a matrix report: per defense, utility (perplexity), what
the text attacks got (exposure, extraction, sequence membership, DAGER), ε and bytes sent, then
examples of what leaked — the original text next to what the attack extracted or reconstructed.

Everything shown is attacker-controlled or private text: every value is escaped (the HTML
helpers), and ``redact`` masks the secrets themselves (every known secret string and every run of
three or more digits) so that a report can be shared without them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from fedguard.report.html import paragraph, table

TEXT_ATTACKS = ("canary_exposure", "extraction", "sequence_membership", "dager")
COLUMNS = (
    ("perplexity", "perplexity (e^test loss)"),
    ("canary_exposure.exposure_mean", "exposure (bits)"),
    ("extraction.extracted", "secrets extracted"),
    ("sequence_membership.loss.auc", "MIA AUC (loss)"),
    ("sequence_membership.zlib.auc", "MIA AUC (zlib)"),
    ("sequence_membership.lira.auc", "MIA AUC (LiRA)"),
    ("sequence_membership.lira.tpr_at_1pct_fpr", "TPR @ 1% FPR (LiRA)"),
    ("dager.token_recovery", "DAGER token recovery"),
    ("epsilon", "ε"),
    ("bytes_per_client", "bytes sent / client"),
)
DIGITS = re.compile(r"\d{3,}")
MASK = "█"


def has_text_attacks(tidy: pd.DataFrame) -> bool:
    return bool(
        tidy["metric"].astype(str).str.startswith(tuple(f"{a}." for a in TEXT_ATTACKS)).any()
    )


def _with_perplexity(tidy: pd.DataFrame) -> pd.DataFrame:
    loss = tidy[tidy.metric == "test_loss"].copy()
    loss["metric"] = "perplexity"
    loss["value"] = np.exp(loss["value"].astype(float))
    return pd.concat([tidy, loss], ignore_index=True)


def _by_defense(tidy: pd.DataFrame, metric: str) -> dict[str, tuple[float, float]]:
    """Mean and std over seeds per defense (over every attack column for utility metrics; the
    attack's own column for an attack's metric)."""
    attack = metric.split(".", 1)[0]
    frame = tidy[tidy.metric == metric]
    if attack in TEXT_ATTACKS:
        frame = frame[frame.attack.astype(str).str.startswith(attack)]
    elif "none" in set(frame.attack):
        frame = frame[frame.attack == "none"]
    out = {}
    for defense, group in frame.groupby("defense"):
        values = group["value"].astype(float).to_numpy()
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        out[str(defense)] = (float(np.mean(values)), std)
    return out


def _cell(value: tuple[float, float] | None) -> str:
    if value is None or not math.isfinite(value[0]):
        return "—"
    mean, std = value
    digits = 0 if abs(mean) >= 100 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def summary_table(tidy: pd.DataFrame) -> str:
    """One row per defense; a TPR at low FPR that the membership metrics flagged unreliable
    (fewer than 1/FPR non-members, or a tie at the threshold) in any seed is marked so."""
    data = _with_perplexity(tidy)
    columns = [(m, label, _by_defense(data, m)) for m, label in COLUMNS]
    columns = [c for c in columns if c[2]]
    defenses = sorted({d for _, _, values in columns for d in values})
    rows = []
    for d in defenses:
        cells = []
        for metric, _, values in columns:
            cell = _cell(values.get(d))
            reliable = (
                _by_defense(data, f"{metric}_reliable").get(d) if "tpr_at" in metric else None
            )
            if reliable is not None and reliable[0] < 1.0 and cell != "—":
                cell += " (unreliable)"
            cells.append(cell)
        rows.append([d, *cells])
    return table(["defense", *(label for _, label, _ in columns)], rows)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret string and every run of ≥ 3 digits masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK * len(secret))
    return DIGITS.sub(lambda m: MASK * len(m.group(0)), text)


def leak_examples(rows: list[dict[str, Any]], limit: int = 12) -> list[dict[str, str]]:
    """Examples the text attacks recorded (``examples``: a JSON list in their metrics), newest
    round first within each cell; at most ``limit``, the extracted or recovered ones first."""
    found: list[dict[str, str]] = []
    for r in rows:
        if r.get("status") != "done":
            continue
        for record in reversed(r.get("records") or []):
            for attack, metrics in (record.get("privacy_attacks") or {}).items():
                raw = metrics.get("examples") if isinstance(metrics, dict) else None
                if not isinstance(raw, str):
                    continue
                try:
                    items = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict):
                        found.append(
                            {
                                "defense": str(r.get("defense", "")),
                                "seed": str(r.get("seed", "")),
                                "attack": str(attack),
                                **{
                                    k: str(item.get(k, ""))
                                    for k in ("original", "recovered", "secret", "detail")
                                },
                            }
                        )
            if found:
                break
    found.sort(key=lambda e: e["original"] != e["recovered"] and e["secret"] not in e["recovered"])
    return found[:limit]


def lm_privacy_html(tidy: pd.DataFrame, rows: list[dict[str, Any]], redact: bool = False) -> str:
    html = paragraph(
        "Per defense (rows; the plain mean is full fine-tuning): mean ± standard deviation over "
        "seeds. Perplexity and bytes are from the no-attack cells; each attack's figures from its "
        "own cells. Exposure: log2 of the candidate space minus log2 of the secret's rank (higher "
        "leaks more; 0 = no information). MIA AUC: 0.5 is chance. DAGER recovers exactly or "
        "reports failure (0) when a client's tokens reach the attention input's dimension. "
        "A TPR at 1% FPR is marked unreliable when fewer than 100 non-members were scored.",
        "statement",
    )
    html += summary_table(tidy)
    examples = leak_examples(rows)
    if examples:
        secrets = [e["secret"] for e in examples]
        shown = [
            [
                e["defense"],
                e["seed"],
                e["attack"],
                redact_text(e["original"], secrets) if redact else e["original"],
                redact_text(e["recovered"], secrets) if redact else e["recovered"],
                e["detail"],
            ]
            for e in examples
        ]
        html += "<h3>What leaked: original next to what the attack produced</h3>"
        if redact:
            html += paragraph("Secrets are masked (fedguard report --redact).", "muted")
        html += table(["defense", "seed", "attack", "original", "attack's output", "detail"], shown)
    return html


__all__ = ["has_text_attacks", "leak_examples", "lm_privacy_html", "redact_text", "summary_table"]
