"""A synthetic cross-silo dataset with user ids: scikit-learn's digits, each image owned by a user.

For user-level DP across silos (``defenses/user_level_dp``): every record carries the id of the
user it belongs to (the dataset's ``groups``); with any partitioner other than ``natural`` the
clients are silos that each hold records of many users, and a user's records are spread over
several silos — the setting of ULDP-FL (Kato et al. 2024). A CSV or Parquet file gets the same
structure from its user id column (``client_column``) with a non-natural partitioner.

References
----------
Kato, Takahashi, Takagi, Cao, Liew, Yoshikawa. "Uldp-FL: Federated Learning with Across-Silo
User-Level Differential Privacy." PVLDB 17(11), 2024 (their cross-silo benchmarks assign the
records of public datasets to synthetic users the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedguard.api import require
from fedguard.data.dataset import Dataset, from_arrays
from fedguard.data.datasets import DatasetSource
from fedguard.data.shuffle_split import digits_arrays
from fedguard.rng import numpy_generator


def assign_users(n_records: int, n_users: int, seed: int) -> np.ndarray:
    """``(n_records,)`` user id of every record: a seeded uniform draw (multinomial user sizes;
    :func:`~fedguard.data.dataset.from_arrays` relabels the ids that occur as 0..G−1)."""
    rng = numpy_generator(seed, -1, -1, "dataset.user_ids")
    return rng.integers(0, n_users, size=n_records)


@dataclass(frozen=True)
class DigitsUsersDataset(DatasetSource):
    """Digits (1,797 8×8 images, 10 classes) with a user id per image: ``n_users`` users, each
    image owned by one user drawn uniformly (seed ``user_seed``)."""

    n_users: int = 60
    user_seed: int = 0

    def __post_init__(self) -> None:
        require(
            isinstance(self.n_users, int) and 2 <= self.n_users <= 1797,
            "dataset.n_users",
            "an integer between 2 and 1797",
        )

    def load(self) -> Dataset:
        images, target = digits_arrays()
        x = images.astype(np.float32) / 16.0
        users = assign_users(len(target), self.n_users, self.user_seed)
        return from_arrays(x[:, None], target, "digits_users", (1, 8, 8), (0.0, 1.0), users)


__all__ = ["DigitsUsersDataset", "assign_users"]
