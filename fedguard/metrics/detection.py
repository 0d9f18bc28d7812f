"""Detection metrics: how well a defense's flags and scores single out the malicious clients.

Pure functions. Rows are the rows of one round's update tensor; ``client_ids`` maps each row to
its client, ``malicious_ids`` is the ground truth (:class:`fedguard.types.Truth`). Undefined rates
(no positives or no negatives among the rows) are NaN, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Counts of flagged / not flagged rows against the truth."""

    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def tpr(self) -> float:
        """True-positive rate (recall on malicious rows); NaN without malicious rows."""
        positives = self.true_positives + self.false_negatives
        return self.true_positives / positives if positives else math.nan

    @property
    def fpr(self) -> float:
        """False-positive rate on honest rows; NaN without honest rows."""
        negatives = self.false_positives + self.true_negatives
        return self.false_positives / negatives if negatives else math.nan


def truth_mask(client_ids: Sequence[int], malicious_ids: Iterable[int]) -> np.ndarray:
    """Boolean ``(n,)``: which rows belong to malicious clients."""
    bad = set(int(i) for i in malicious_ids)
    return np.array([int(c) in bad for c in client_ids], dtype=bool)


def confusion(
    flagged_rows: Iterable[int], client_ids: Sequence[int], malicious_ids: Iterable[int]
) -> Confusion:
    """Confusion counts of the flagged row indices against the malicious client ids."""
    truth = truth_mask(client_ids, malicious_ids)
    flagged = np.zeros(len(client_ids), dtype=bool)
    rows = [int(r) for r in flagged_rows]
    if any(r < 0 or r >= len(client_ids) for r in rows):
        raise ValueError(f"flagged rows must lie in [0, {len(client_ids)}); got {sorted(rows)}.")
    flagged[rows] = True
    return Confusion(
        true_positives=int((flagged & truth).sum()),
        false_positives=int((flagged & ~truth).sum()),
        false_negatives=int((~flagged & truth).sum()),
        true_negatives=int((~flagged & ~truth).sum()),
    )


def tpr_fpr(
    flagged_rows: Iterable[int], client_ids: Sequence[int], malicious_ids: Iterable[int]
) -> tuple[float, float]:
    """(TPR, FPR) of flagging; NaN where undefined."""
    c = confusion(flagged_rows, client_ids, malicious_ids)
    return c.tpr, c.fpr


def auroc(
    scores: Sequence[float] | np.ndarray, client_ids: Sequence[int], malicious_ids: Iterable[int]
) -> float:
    """Area under the ROC curve of suspicion scores (higher = more suspicious).

    The Mann–Whitney form: P(score of a malicious row > score of an honest row) + ½ P(tie), equal
    to scikit-learn's ``roc_auc_score``. ``+inf`` scores (faulty rows) rank highest; NaN scores are
    ranked lowest. NaN when either class is absent.
    """
    s = np.asarray(scores, dtype=np.float64)
    truth = truth_mask(client_ids, malicious_ids)
    if s.shape != truth.shape:
        raise ValueError(f"need one score per row ({truth.size}); got {s.size}.")
    n_pos = int(truth.sum())
    n_neg = int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    s = np.where(np.isnan(s), -np.inf, s)
    ranks = average_ranks(s)  # 1-based, ties share their average rank
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (no NaN), ties sharing their average rank: what
    ``scipy.stats.rankdata(values, method="average")`` returns, without importing SciPy (about
    a second of start-up for every ``fedguard run`` and matrix worker)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # (n,) a new tie group starts here
    first = np.flatnonzero(starts)
    stop = np.r_[first[1:], len(values)]
    group = np.cumsum(starts) - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((first + 1 + stop) / 2.0)[group]  # mean of positions first+1 … stop
    return ranks


def first_detection_round(
    flagged_ids_per_round: Sequence[Iterable[int]],
    malicious_ids: Iterable[int],
    rounds: Sequence[int] | None = None,
) -> int | None:
    """The first round in which any malicious client was flagged, or ``None`` if never.

    ``flagged_ids_per_round[k]`` holds the flagged *client ids* of the k-th recorded round, whose
    round number is ``rounds[k]`` (default: k + 1, rounds counted from 1).
    """
    bad = set(int(i) for i in malicious_ids)
    numbers = list(rounds) if rounds is not None else list(range(1, len(flagged_ids_per_round) + 1))
    if len(numbers) != len(flagged_ids_per_round):
        raise ValueError("rounds must give one round number per entry of flagged_ids_per_round.")
    for number, flagged in zip(numbers, flagged_ids_per_round, strict=True):
        if bad.intersection(int(i) for i in flagged):
            return int(number)
    return None


def rounds_until_first_detection(
    flagged_ids_per_round: Sequence[Iterable[int]], malicious_ids: Iterable[int]
) -> int | None:
    """How many rounds passed before the first detection (0 = detected in the first round)."""
    first = first_detection_round(flagged_ids_per_round, malicious_ids)
    return None if first is None else first - 1


def detection_summary(
    flagged_rows: Iterable[int],
    scores: Sequence[float] | np.ndarray | None,
    client_ids: Sequence[int],
    malicious_ids: Iterable[int],
) -> dict[str, float]:
    """``{"tpr", "fpr", "auroc"}`` for one round's :class:`~fedguard.types.AggregationResult`."""
    bad = list(malicious_ids)
    c = confusion(flagged_rows, client_ids, bad)
    return {
        "tpr": c.tpr,
        "fpr": c.fpr,
        "auroc": auroc(scores, client_ids, bad) if scores is not None else math.nan,
    }


def run_detection(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Detection over a run's round records (``flagged``, ``scores``, ``malicious``, ``free_riders``).

    ``detection_tpr`` / ``detection_fpr``: flags pooled over all rounds (each participation counts
    once); ``detection_auroc``: the mean over rounds of the per-round AUROC of the rule's scores
    (rounds with both honest and malicious participants); ``rounds_to_detection``: the first round
    with a malicious client flagged. Empty when the run had no malicious participants.
    """
    tp = fp = pos = neg = 0
    aurocs: list[float] = []
    flagged_per_round: list[list[int]] = []
    bad_ids: set[int] = set()
    round_numbers: list[int] = []
    for r in records:
        bad = set(r.get("malicious", [])) | set(r.get("free_riders", []))
        flagged = set(r.get("flagged", []))
        n = int(r.get("clients", 0))
        tp += len(bad & flagged)
        fp += len(flagged - bad)
        pos += len(bad)
        neg += n - len(bad)
        bad_ids |= bad
        flagged_per_round.append(sorted(flagged))
        round_numbers.append(int(r["round"]))
        scores = r.get("scores") or {}
        if scores and bad and len(bad) < len(scores):
            ids = [int(i) for i in scores]
            value = auroc([scores[str(i)] for i in ids], ids, bad)
            if math.isfinite(value):
                aurocs.append(value)
    out: dict[str, float] = {}
    if pos:
        out["detection_tpr"] = tp / pos
        first = first_detection_round(flagged_per_round, bad_ids, round_numbers)
        if first is not None:
            out["rounds_to_detection"] = float(first)
        if aurocs:
            out["detection_auroc"] = float(np.mean(aurocs))
    if neg:
        out["detection_fpr"] = fp / neg
    return out
