"""Client sampling per round. The scheme is recorded: privacy accounting depends on it
(Poisson sampling is add/remove, a fixed cohort is sampling without replacement)."""

from __future__ import annotations

import numpy as np

from fedguard.rng import numpy_generator


def sample_clients(
    scheme: str, n_clients: int, cohort_size: int, rate: float, seed: int, round_index: int
) -> tuple[int, ...]:
    """Sorted ids of the clients taking part in ``round_index``."""
    if scheme == "all":
        return tuple(range(n_clients))
    rng = numpy_generator(seed, round_index, -1, "client_sampling")
    if scheme == "fixed":
        return tuple(sorted(int(i) for i in rng.choice(n_clients, cohort_size, replace=False)))
    chosen = np.flatnonzero(rng.random(n_clients) < rate)
    return tuple(int(i) for i in chosen)


def sampling_description(scheme: str, n_clients: int, cohort_size: int, rate: float) -> dict:
    if scheme == "all":
        q, expected = 1.0, float(n_clients)
    elif scheme == "fixed":
        q, expected = cohort_size / n_clients, float(cohort_size)
    else:
        q, expected = rate, rate * n_clients
    relation = "replace_one" if scheme == "fixed" else "add_remove"
    return {
        "scheme": {"all": "all", "fixed": "without_replacement", "poisson": "poisson"}[scheme],
        "rate": q,
        "expected_cohort": expected,
        "population": n_clients,
        "neighbouring_relation": relation,
    }
