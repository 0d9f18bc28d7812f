"""The scikit-learn-free split and digits loader give scikit-learn's own results."""

from __future__ import annotations

import numpy as np
import pytest

from fedguard.data.shuffle_split import digits_arrays, train_test_indices


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
@pytest.mark.parametrize("n", [20, 57, 300])
@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.33])
@pytest.mark.parametrize("classes", [2, 3, 10, 0])  # 0: no stratification
def test_split_equals_sklearn(seed: int, n: int, fraction: float, classes: int) -> None:
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed + n)
    index = rng.permutation(1000)[:n]
    labels = None
    if classes:
        labels = rng.choice(
            classes, size=n, p=np.linspace(1, 2, classes) / np.linspace(1, 2, classes).sum()
        )
        if np.bincount(labels).min() < 2 or np.ceil(fraction * n) < classes:
            labels = None  # what fedguard passes when a class is too small to stratify
    expected = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    got = train_test_indices(index, fraction, seed, labels)
    for e, g in zip(expected, got, strict=True):
        assert np.array_equal(e, g)


def test_split_with_ties_in_class_allocation_equals_sklearn() -> None:
    from sklearn.model_selection import train_test_split

    labels = np.repeat(np.arange(7), 5)  # equal classes: the allocation breaks ties by rng
    index = np.arange(35)
    for seed in range(20):
        expected = train_test_split(index, test_size=0.3, random_state=seed, stratify=labels)
        got = train_test_indices(index, 0.3, seed, labels)
        assert all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))


def test_split_refuses_an_empty_side() -> None:
    with pytest.raises(ValueError, match="empty"):
        train_test_indices(np.arange(1), 0.5, 0, None)


def test_digits_equal_sklearn_load_digits() -> None:
    from sklearn.datasets import load_digits

    images, target = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)
