"""Scores of a text reconstruction against the original: ROUGE-N, exact tokens, exact sequences.

Reconstructions are paired with originals by the Hungarian algorithm maximising ROUGE-1 F1 (a
reconstruction counts for at most one original), as in the gradient-inversion literature.

References
----------
Lin. "ROUGE: A Package for Automatic Evaluation of Summaries." ACL Workshop 2004 (ROUGE-N:
clipped n-gram overlap; we report its F1 like the ``rouge-score`` package).
Petrov et al. "DAGER: Exact Gradient Inversion for Large Language Models." NeurIPS 2024
(ROUGE-1/2 and exact-token metrics for text inversion).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def ngrams(items: Sequence[Hashable], n: int) -> Counter[tuple[Hashable, ...]]:
    return Counter(tuple(items[i : i + n]) for i in range(len(items) - n + 1))


def rouge_n(candidate: Sequence[Hashable], reference: Sequence[Hashable], n: int) -> float:
    """ROUGE-N F1: ``2PR/(P + R)`` with ``P``, ``R`` the clipped n-gram overlap over the
    candidate's and the reference's n-gram counts; 0 when either has no n-gram."""
    cand, ref = ngrams(candidate, n), ngrams(reference, n)
    overlap = sum((cand & ref).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(cand.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def words(text: str) -> list[str]:
    """Whitespace words, lower-cased (the unit ROUGE is reported in for text)."""
    return text.lower().split()


def match_sequences(
    reconstructed: Sequence[Sequence[Hashable]], originals: Sequence[Sequence[Hashable]]
) -> list[tuple[int, int]]:
    """``(reconstruction index, original index)`` pairs maximising the summed ROUGE-1 F1."""
    if not reconstructed or not originals:
        return []
    gain = np.array([[rouge_n(r, o, 1) for o in originals] for r in reconstructed])
    rows, cols = linear_sum_assignment(-gain)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)]


def token_accuracy(reconstructed: Sequence[Hashable], original: Sequence[Hashable]) -> float:
    """Fraction of the original's positions holding the same token in the reconstruction."""
    if not original:
        return 1.0
    same = sum(1 for a, b in zip(reconstructed, original, strict=False) if a == b)
    return same / len(original)


def position_token_recall(
    tokens_by_position: Sequence[Sequence[int]], originals: Sequence[Sequence[int]]
) -> float:
    """Fraction of the originals' (position, token) pairs whose token was found at that
    position — the score of a recovery that could not pair tokens into sequences."""
    total = sum(len(o) for o in originals)
    if total == 0:
        return 1.0
    found = sum(
        1
        for o in originals
        for p, t in enumerate(o)
        if p < len(tokens_by_position) and t in tokens_by_position[p]
    )
    return found / total


def sequence_scores(
    reconstructed: Sequence[Sequence[int]],
    originals: Sequence[Sequence[int]],
    as_words: Sequence[str] | None = None,
    originals_as_words: Sequence[str] | None = None,
) -> dict[str, float]:
    """Token accuracy, exact-sequence rate and ROUGE-1/2 over the originals (an unmatched
    original scores 0), and the precision of the reconstructions (the fraction of them that are
    an original exactly; 0 when there are none). ``as_words``: the texts of the reconstructions and originals, for ROUGE
    over words instead of tokens."""
    n = len(originals)
    if n == 0:
        return {}
    pairs = match_sequences(reconstructed, originals)
    tok = exact = r1 = r2 = 0.0
    for i, j in pairs:
        tok += token_accuracy(reconstructed[i], originals[j])
        exact += float(tuple(reconstructed[i]) == tuple(originals[j]))
        cand: Sequence[Hashable] = reconstructed[i]
        ref: Sequence[Hashable] = originals[j]
        if as_words is not None and originals_as_words is not None:
            cand, ref = words(as_words[i]), words(originals_as_words[j])
        r1 += rouge_n(cand, ref, 1)
        r2 += rouge_n(cand, ref, 2)
    truth = {tuple(o) for o in originals}
    hits = sum(1 for r in reconstructed if tuple(r) in truth)
    return {
        "sequence_precision": hits / len(reconstructed) if reconstructed else 0.0,
        "token_recovery": tok / n,
        "sequence_recovery": exact / n,
        "rouge1": r1 / n,
        "rouge2": r2 / n,
    }


__all__ = [
    "match_sequences",
    "ngrams",
    "position_token_recall",
    "rouge_n",
    "sequence_scores",
    "token_accuracy",
    "words",
]
