"""One line per privacy attack of a run: what it got, next to what a trivial attacker gets.

A run's summary stores each privacy attack's metrics as a flat mapping (averaged over the rounds
the attack observed). Read raw, they are a wall of numbers; :func:`headline` turns the ones a
reader needs into a sentence and a second one stating the baseline and the caveats:

- **membership inference** (``auc`` and TPR at 1% FPR, possibly per score as ``loss.auc``): the
  AUC with its 95% interval (Hanley & McNeil 1982, from the AUC and the two group sizes, the only
  inputs a summary keeps), the TPR with its stored Clopper–Pearson interval, and chance (AUC 0.5,
  TPR = FPR); a TPR flagged unreliable (fewer than 1/FPR non-members, or a tie at the threshold)
  says so;
- **image reconstruction** (``psnr_db`` with the two guessing baselines the attacks store: the
  mean image and the true class's mean image), recovered samples (PSNR ≥ 3 dB above both);
- **malicious-server reconstruction** (recovered samples of the attacked groups: PSNR ≥ 30 dB
  and 3 dB above the class-mean guess);
- **text** attacks: canary exposure (bits), extraction (secrets completed), DAGER token
  recovery; a canary the model did not memorise has exposure about 1/ln 2 ≈ 1.44
  bits (its rank uniform among the candidates; Carlini et al. 2019);
- anything else: its numeric metrics as stored. Metrics a headline does not use stay in
  ``complete.json`` and in the report's full table.

References
----------
Hanley, McNeil. "The meaning and use of the area under a receiver operating characteristic (ROC)
curve." Radiology 143(1), 1982.
Carlini, Liu, Erlingsson, Kos, Song. "The Secret Sharer: Evaluating and Testing Unintended
Memorization in Neural Networks." USENIX Security 2019.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedguard.metrics.test_accuracy import Z95

#: bookkeeping fields of the stored metrics, never shown as results
_QUIET = ("from_aggregate", "n_clients_in_aggregate", "examples")


def auc_interval(auc: float, positives: int, negatives: int, z: float = Z95) -> tuple[float, float]:
    """Hanley–McNeil 95% interval of an ROC AUC from ``positives`` members and ``negatives``
    non-members (normal approximation, clipped to [0, 1]). At AUC 0.5 its variance is the
    Mann–Whitney null variance ``(n₁ + n₂ + 1) / (12 n₁ n₂)``."""
    if positives <= 0 or negatives <= 0:
        raise ValueError("an AUC interval needs at least one member and one non-member.")
    a = min(max(auc, 0.0), 1.0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: float) -> str:
    """A count averaged over rounds: whole where it is whole."""
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _membership(m: Mapping[str, Any], prefix: str, used: set[str]) -> tuple[str, str | None, bool]:
    """(result, "n members, n non-members" or None, whether its TPR is flagged unreliable)."""
    auc = _num(m, prefix + "auc")
    assert auc is not None
    used.add(prefix + "auc")
    members = _num(m, prefix + "n_members") or _num(m, "n_members")
    nonmembers = _num(m, prefix + "n_nonmembers") or _num(m, "n_nonmembers")
    used.update({prefix + "n_members", prefix + "n_nonmembers", "n_members", "n_nonmembers"})
    label = f"{prefix[:-1]} " if prefix else ""
    text = f"{label}AUC {auc:.3f}"
    counts = None
    if members and nonmembers and members >= 1 and nonmembers >= 1 and 0 <= auc <= 1:
        low, high = auc_interval(auc, round(members), round(nonmembers))
        text += f" (95% CI {low:.3f}–{high:.3f})"
        counts = f"{_count(members)} members, {_count(nonmembers)} non-members"
    tpr = _num(m, prefix + "tpr_at_1pct_fpr")
    unreliable = False
    if tpr is not None:
        used.update(k for k in m if k.startswith(prefix + "tpr_at_"))
        tpr_low = _num(m, prefix + "tpr_at_1pct_fpr_lower")
        tpr_high = _num(m, prefix + "tpr_at_1pct_fpr_upper")
        text += f", TPR {100 * tpr:.1f}% at 1% FPR"
        if tpr_low is not None and tpr_high is not None:
            text += f" (95% CI {100 * tpr_low:.1f}–{100 * tpr_high:.1f}%)"
        unreliable = _num(m, prefix + "tpr_at_1pct_fpr_reliable") == 0.0
    return text, counts, unreliable


def headline(metrics: Mapping[str, Any]) -> tuple[str, str]:
    """(result, baseline and caveats) of one privacy attack's stored metrics."""
    used: set[str] = set(_QUIET)
    parts: list[str] = []
    notes: list[str] = []
    prefixes = sorted(
        k[: -len("auc")]
        for k in metrics
        if (k == "auc" or k.endswith(".auc")) and _num(metrics, k) is not None
    )
    counts: list[str] = []
    unreliable: list[str] = []
    for prefix in prefixes:
        text, count, flagged = _membership(metrics, prefix, used)
        parts.append(text)
        if count is not None and count not in counts:  # scores of one attack share their sets
            counts.append(count)
        if flagged:
            unreliable.append(prefix[:-1] or "the")
    if prefixes:
        notes += ["chance: AUC 0.5, TPR = FPR", *counts]
    if unreliable:
        whose = "" if unreliable == ["the"] else f" of {', '.join(unreliable)}"
        notes.append(
            f"the TPR at 1% FPR{whose} is not reliable (under 100 non-members or a tie at the "
            "threshold)"
        )
    psnr = _num(metrics, "psnr_db")
    if psnr is not None:
        text = f"PSNR {psnr:.1f} dB"
        worst = _num(metrics, "psnr_db_min")
        if worst is not None:
            text += f" (worst sample {worst:.1f} dB)"
        ssim = _num(metrics, "ssim")
        if ssim is not None:
            text += f", SSIM {ssim:.2f}"
        parts.append(text)
        used.update({"psnr_db", "psnr_db_min", "ssim", "mse"})
        base, cls = (
            _num(metrics, "baseline_mean_psnr_db"),
            _num(metrics, "baseline_class_mean_psnr_db"),
        )
        if base is not None and cls is not None:
            notes.append(
                f"guessing the mean image gets {base:.1f} dB, its class's mean image {cls:.1f} dB"
            )
            used.update({"baseline_mean_psnr_db", "baseline_class_mean_psnr_db"})
    recovered = _num(metrics, "n_recovered")
    total = _num(metrics, "n_true") or _num(metrics, "n_samples")
    if recovered is not None and total:
        parts.append(f"{_count(recovered)} of {_count(total)} samples recovered")
        if "n_true" in metrics:  # gradient inversion (attacks.inversion._common)
            notes.append("recovered: PSNR at least 3 dB above both guessing baselines")
        else:  # a malicious server's groups (attacks.malicious_server.scoring)
            notes.append("recovered: PSNR at least 30 dB and 3 dB above the class-mean guess")
        used.update({"n_recovered", "n_true", "n_samples", "recovered_fraction", "n_reconstructed"})
    labels = _num(metrics, "label_accuracy")
    if labels is not None:
        parts.append(f"labels {100 * labels:.0f}% correct")
        used.add("label_accuracy")
    exposure = _num(metrics, "exposure_mean")
    if exposure is not None:
        top = _num(metrics, "exposure_max")
        share = _num(metrics, "exposure_fraction_of_max")
        parts.append(
            f"canary exposure {exposure:.1f} bits mean"
            + (f", {top:.1f} max" if top is not None else "")
            + (f" ({100 * share:.0f}% of the most a canary can have)" if share is not None else "")
        )
        # rank uniform on 1..|R|: E[log2|R| − log2 rank] → 1/ln 2 bits as |R| grows
        notes.append(
            "a canary the model did not memorise ranks like a random candidate: about 1.4 bits "
            "(1/ln 2) expected"
        )
        used.update(k for k in metrics if k.startswith("exposure_"))
    extracted, secrets = _num(metrics, "extracted"), _num(metrics, "n_secrets")
    if extracted is not None and secrets:
        parts.append(f"{_count(extracted)} of {_count(secrets)} secrets extracted")
        used.update({"extracted", "extracted_greedy", "extracted_fraction", "n_secrets"})
    elif secrets is not None:
        used.add("n_secrets")
    tokens = _num(metrics, "token_recovery")
    if tokens is not None:
        parts.append(f"{100 * tokens:.0f}% of tokens recovered")
        used.add("token_recovery")
    rest = [
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if k not in used and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    if not parts:  # an attack whose metrics are not known here: as stored
        parts, rest = rest, []
    if _num(metrics, "from_aggregate") == 1.0:
        clients = _num(metrics, "n_clients_in_aggregate")
        notes.append(
            "from the aggregate" + (f" of {_count(clients)} clients" if clients is not None else "")
        )
    result = "; ".join(parts) if parts else "no numeric result"
    return result, "; ".join(notes) if notes else "—"


__all__ = ["auc_interval", "headline"]
