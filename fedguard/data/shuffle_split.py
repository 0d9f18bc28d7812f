"""scikit-learn's ``train_test_split`` and ``load_digits`` without importing scikit-learn.

Importing scikit-learn costs about a second (it pulls in most of SciPy), more than a whole
quickstart run trains. These functions reproduce the two calls a run needs, draw for draw:
``train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)``
(``ShuffleSplit``, or ``StratifiedShuffleSplit`` with its approximate-mode class allocation,
scikit-learn ≥ 1.3) and the bundled 8×8 digits read from scikit-learn's own data file. Tests
compare both with scikit-learn itself.

References
----------
Pedregosa et al. "Scikit-learn: Machine Learning in Python." JMLR 12, 2011.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np


def train_test_indices(
    index: np.ndarray, test_fraction: float, seed: int, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` = ``sklearn.model_selection.train_test_split(index,
    test_size=test_fraction, random_state=seed, stratify=stratify)``."""
    n = len(index)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    if n_train <= 0 or n_test <= 0:
        raise ValueError(
            f"a test fraction of {test_fraction} of {n} samples leaves an empty train or test set"
        )
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(n)
        return index[permutation[n_test : n_test + n_train]], index[permutation[:n_test]]
    classes, y_indices, class_counts = np.unique(stratify, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError(
            f"a stratified split of {n} samples into {n_train} train and {n_test} test needs at "
            f"least 2 samples of each of the {len(classes)} classes and one per class on each side"
        )
    members = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for i in range(len(classes)):
        shuffled = members[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return index[rng.permutation(train)], index[rng.permutation(test)]


def _approximate_mode(
    class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState
) -> np.ndarray:
    """scikit-learn's approximate mode of the multivariate hypergeometric (ties broken by
    ``rng``): how many of ``n_draws`` each class gets."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


@functools.cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64, target (1797,) int)`` of ``sklearn.datasets.load_digits``,
    read from the file scikit-learn ships (its package is located, not imported).

    Parsed once per process (about 20 ms, a tenth of a quickstart matrix cell) and returned
    read-only, so that a matrix worker's cells share it safely.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is needed for the bundled digits dataset")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    data = np.loadtxt(path / "digits.csv.gz", delimiter=",")
    images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    images.flags.writeable = target.flags.writeable = False
    return images, target


__all__ = ["digits_arrays", "train_test_indices"]
