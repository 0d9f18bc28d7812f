"""The final test accuracy as a reader needs it: its 95% interval and what a trivial model gets.

The trivial baselines are chance (1/classes, a uniform guess) and the share of the test set's
most frequent class (a constant prediction of that class). On skewed data the second is the
stronger one: a classifier of the breast-cancer table that always answers "benign" scores 0.63,
far above chance's 0.5, so an accuracy is read against both.

A run's test accuracy is a proportion of correctly classified test samples, so its sampling
uncertainty is a binomial interval over the test-set size. The Wilson score interval is used:
closed form (no SciPy import on the CLI's path), never outside [0, 1], and with coverage close to
nominal even for small test sets and accuracies near 0 or 1 (Brown, Cai & DasGupta 2001), where
the normal ("Wald") interval is not. Next-token accuracy of a language model is a per-sequence
average of per-token proportions, not one binomial proportion, so it gets no such interval.

References
----------
Wilson. "Probable inference, the law of succession, and statistical inference." JASA 22, 1927.
Brown, Cai, DasGupta. "Interval estimation for a binomial proportion." Statistical Science 16,
2001.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from torch import Tensor

#: two-sided 95% standard-normal quantile
Z95 = 1.959963984540054


def wilson_interval(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / trials``."""
    if trials <= 0:
        raise ValueError("a binomial interval needs at least one trial.")
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # at 0 or all successes the bound is exactly 0 or 1 (the formula gives it up to rounding)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= trials else min(1.0, centre + half)
    return low, high


def majority_share(labels: Tensor) -> float | None:
    """Share of the most frequent class among class labels ``labels`` (1-D): the accuracy of a
    constant prediction of that class; None for other label shapes (next-token targets) or no
    labels."""
    if labels.dim() != 1 or len(labels) == 0:
        return None
    return float(labels.long().bincount().max()) / len(labels)


def _share(value: Any) -> TypeGuard[float]:
    """A proportion in [0, 1] (JSON from elsewhere may hold anything)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def _count(value: Any) -> TypeGuard[int]:
    """A positive whole count (not a bool, as JSON from elsewhere may hold anything)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def accuracy_text(summary: Mapping[str, Any]) -> str | None:
    """The final test accuracy with its convention: the 95% Wilson interval over the test
    samples, chance (1/classes) and the most frequent test class's share where the summary
    states them; None without an accuracy (no evaluation; a summary written before these
    fields existed gives the bare value)."""
    acc = summary.get("final_test_accuracy")
    if not isinstance(acc, int | float) or not math.isfinite(acc):
        return None
    classes = summary.get("n_classes")
    chance = f"chance {1 / classes:.3f}" if _count(classes) else None
    samples = summary.get("test_samples")
    sequences = summary.get("test_sequences")
    if _count(samples) and 0 <= acc <= 1:  # a run folder may come from someone else
        low, high = wilson_interval(round(acc * samples), samples)
        parts = [f"95% CI {low:.3f}–{high:.3f} over {samples:,} test samples (Wilson)"]
    elif _count(sequences):
        parts = [f"per-token, averaged over {sequences:,} test sequences; no binomial interval"]
    else:
        parts = []
    majority = summary.get("majority_share")
    if _share(majority):
        common = f"always the most frequent test class {majority:.3f}"
        chance = f"{chance}, {common}" if chance else common
    if chance:
        parts.append(chance)
    return "; ".join([f"{acc:.4f}", *parts])


def backdoor_text(summary: Mapping[str, Any]) -> str | None:
    """The final backdoor success rate with its convention (the share of triggered test samples
    of the other classes classified as the target class) and its 95% Wilson interval over them;
    None without a backdoor."""
    rate = summary.get("backdoor_success")
    if not isinstance(rate, int | float) or not math.isfinite(rate):
        return None
    samples = summary.get("triggered_samples")
    text = f"{rate:.4f}; share of triggered non-target test samples classified as the target"
    if _count(samples) and 0 <= rate <= 1:
        low, high = wilson_interval(round(rate * samples), samples)
        text += f"; 95% CI {low:.3f}–{high:.3f} over {samples:,} of them (Wilson)"
    return text


__all__ = ["Z95", "accuracy_text", "backdoor_text", "majority_share", "wilson_interval"]
