"""Communication graphs: who exchanges keys and shares with whom.

Bonawitz et al. (2017) use the complete graph. SecAgg+ (Bell et al. 2020) uses a random k-regular
graph with k = O(log n): here the Harary graph H_{k,n} (node i adjacent to i ± 1, …, i ± k/2
mod n, plus i + n/2 when k is odd and n even) under a uniformly random relabelling of the
nodes, which is the construction of Bell et al. (Sec. 3, "random Harary graph").

A client's *closed neighbourhood* (itself and its neighbours) holds the Shamir shares of its
secrets; the threshold t applies per closed neighbourhood (n holders in the complete graph,
k + 1 in SecAgg+).

References
----------
.. [1] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
   Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
.. [2] F. Harary, "The maximum connectivity of a graph", PNAS 48(7), 1962.
"""

from __future__ import annotations

import math

import torch

Graph = dict[int, frozenset[int]]  # client id -> open neighbourhood (ids of the neighbours)


def complete_graph(ids: tuple[int, ...]) -> Graph:
    everyone = frozenset(ids)
    return {u: everyone - {u} for u in ids}


def default_degree(n_clients: int) -> int:
    """k = 2·⌈log2 n⌉ (even, O(log n)), capped at n − 1."""
    if n_clients <= 1:
        return 0
    return min(n_clients - 1, 2 * math.ceil(math.log2(n_clients)))


def harary_graph(ids: tuple[int, ...], degree: int, generator: torch.Generator) -> Graph:
    """Random k-regular Harary graph over ``ids`` (k = ``degree``); complete when k ≥ n − 1."""
    n = len(ids)
    if degree >= n - 1:
        return complete_graph(ids)
    if degree < 1:
        raise ValueError("neighbours must be at least 1.")
    if degree % 2 and n % 2:
        raise ValueError(
            f"neighbours must be even when the cohort size is odd (no {degree}-regular graph "
            f"on {n} nodes exists)."
        )
    perm = torch.randperm(n, generator=generator).tolist()  # position -> index into ids
    offsets = list(range(1, degree // 2 + 1))
    if degree % 2:
        offsets.append(n // 2)
    adj: dict[int, set[int]] = {ids[perm[p]]: set() for p in range(n)}
    for p in range(n):
        u = ids[perm[p]]
        for off in offsets:
            v = ids[perm[(p + off) % n]]
            adj[u].add(v)
            adj[v].add(u)
    return {u: frozenset(vs) for u, vs in adj.items()}


def public_harary_graph(ids: tuple[int, ...], degree: int, seed: bytes) -> Graph:
    """The random Harary graph drawn from public randomness ``seed`` (≥ 8 bytes).

    The active-adversary variant derives ``seed`` from a public beacon read only after every
    client's keys are committed (Bell et al. 2020, Sec. 3: the graph must not be known before
    the adversary has chosen whom to corrupt), so that nobody can place corrupt clients around
    a victim; every party recomputes the same graph.
    """
    if len(seed) < 8:
        raise ValueError("the graph seed must be at least 8 bytes.")
    gen = torch.Generator().manual_seed(int.from_bytes(seed[:8], "big") & (2**63 - 1))
    return harary_graph(ids, degree, gen)
