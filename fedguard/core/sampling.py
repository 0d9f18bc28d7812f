"""Client sampling per round. The scheme is recorded: privacy accounting depends on it
(Poisson sampling is add/remove, a fixed cohort is sampling without replacement, a
min-separation schedule bounds how often one client can take part).

References
----------
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023 (the b-min-separation participation schedule and
its Poisson-within-groups variant).
"""

from __future__ import annotations

import numpy as np

from fedguard.rng import numpy_generator


def min_separation_groups(n_clients: int, min_separation: int, seed: int) -> np.ndarray:
    """``(n_clients,)`` group of each client (0 … b − 1) for the min-separation schedule.

    A keyed random permutation of the clients, dealt round-robin into ``b`` groups (sizes differ
    by at most one). The groups depend only on the seed and the population, never on data.
    """
    order = numpy_generator(seed, -1, -1, "min_separation_groups").permutation(n_clients)
    groups = np.empty(n_clients, dtype=np.int64)
    groups[order] = np.arange(n_clients) % min_separation
    return groups


def sample_clients(
    scheme: str,
    n_clients: int,
    cohort_size: int,
    rate: float,
    seed: int,
    round_index: int,
    min_separation: int = 1,
) -> tuple[int, ...]:
    """Sorted ids of the clients taking part in ``round_index``.

    ``min_separation`` (scheme ``"min_separation"``): group ``round_index mod b`` is eligible;
    with ``0 < rate < 1`` each eligible client takes part independently with probability
    ``rate`` (amplified BandMF), otherwise every eligible client does. A client therefore takes
    part at most once in any ``b`` consecutive rounds.
    """
    if scheme == "all":
        return tuple(range(n_clients))
    rng = numpy_generator(seed, round_index, -1, "client_sampling")
    if scheme == "fixed":
        return tuple(sorted(int(i) for i in rng.choice(n_clients, cohort_size, replace=False)))
    if scheme == "min_separation":
        groups = min_separation_groups(n_clients, min_separation, seed)
        eligible = groups == round_index % min_separation  # (n_clients,)
        if 0 < rate < 1:
            eligible &= rng.random(n_clients) < rate
        return tuple(int(i) for i in np.flatnonzero(eligible))
    chosen = np.flatnonzero(rng.random(n_clients) < rate)
    return tuple(int(i) for i in chosen)


def sampling_description(
    scheme: str, n_clients: int, cohort_size: int, rate: float, min_separation: int = 1
) -> dict:
    """What privacy mechanisms are told about the round's sampling.

    A min-separation schedule is described as ``scheme`` ``"poisson"`` (with a rate q < 1
    inside the eligible group) or ``"all"`` (every eligible client), which mechanisms that
    ignore the schedule may account as is: rounds in which a client is not eligible cost it
    nothing, so charging every round is a valid (loose) bound. ``schedule``,
    ``min_separation`` and ``expected_cohort`` = qN/b say what really happens.
    """
    if scheme == "min_separation":
        q = rate if 0 < rate < 1 else 1.0
        return {
            "scheme": "poisson" if q < 1 else "all",
            "rate": q,
            "expected_cohort": q * n_clients / min_separation,
            "population": n_clients,
            "neighbouring_relation": "add_remove",
            "schedule": "min_separation",
            "min_separation": min_separation,
        }
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
