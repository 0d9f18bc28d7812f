"""Cut one DP-SGD step's Poisson batches into passes so that padding stops costing compute.

Poisson sampling gives every client a batch of a different size; run together on stacked
parameters, all batches are padded to the largest (at 100 clients of 128 samples, rate 1/2,
about 18% of the slots are padding). Per-sample clipping makes a client's clipped gradient sum
additive over any split of its batch, so a step can run in passes over slot ranges
``[w_{j-1}, w_j)``: the first pass over all clients (the prefix view the trainer already
holds), each later pass only over the clients whose batch reaches past ``w_{j-1}``. The cut
points minimise ``slots · cost_per_slot + passes · cost_per_pass`` exactly (dynamic programming
over the distinct batch sizes); the choice depends only on the batch sizes and the model's
shape, never on timings, so results stay reproducible bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: fixed cost of one more pass (its forward, backward and gathers), in multiply-accumulates of
#: the forward pass: about a millisecond of Python and kernel launches on one CPU core
PASS_COST_MACS = 3_000_000
MAX_PASSES = 4


def slot_levels(
    sizes: Sequence[int],
    macs_per_sample: int,
    max_passes: int | None = None,
    pass_cost: int | None = None,
) -> list[int]:
    """Cut points ``[w_1, …, w_G]`` (``w_G`` = the largest batch, at least 1) of the passes.

    Pass 1 covers slots ``[0, w_1)`` of all ``len(sizes)`` clients; pass j > 1 covers slots
    ``[w_{j-1}, w_j)`` of the clients with ``size > w_{j-1}``. ``max_passes`` and ``pass_cost``
    default to :data:`MAX_PASSES` and :data:`PASS_COST_MACS`.
    """
    max_passes = MAX_PASSES if max_passes is None else max_passes
    pass_cost = PASS_COST_MACS if pass_cost is None else pass_cost
    counts = np.asarray(list(sizes), dtype=np.int64)
    top = max(int(counts.max(initial=0)), 1)
    if max_passes <= 1 or len(counts) < 2:
        return [top]
    if (len(counts) * top - int(counts.sum())) * macs_per_sample <= pass_cost:
        return [top]  # even removing all the padding would not pay for a second pass
    ends = np.unique(counts[counts > 0])  # candidate cut points, ascending; the last is `top`
    if len(ends) < 2:
        return [top]
    starts = np.concatenate([[0], ends[:-1]])  # a pass starts at 0 or at a previous cut
    # clients in a pass starting at s: all of them for s = 0, else those with size > s
    clients = np.where(starts == 0, len(counts), (counts[None, :] > starts[:, None]).sum(axis=1))
    # cost[a, b]: a pass from starts[a] to ends[b] (only b ≥ a is a valid pass)
    width = ends[None, :] - starts[:, None]
    cost = np.where(width > 0, clients[:, None] * width * float(macs_per_sample), np.inf)
    best = cost[0].copy()  # one pass ending at ends[b]
    choice = [np.zeros(len(ends), dtype=np.int64)]
    totals = [best[-1]]
    for _ in range(1, max_passes):
        # a pass starting at starts[a] = ends[a - 1] follows the passes ending there
        previous = np.concatenate([[np.inf], best[:-1]])  # (a,) cost of covering up to starts[a]
        candidate = previous[:, None] + cost + pass_cost
        arg = np.argmin(candidate, axis=0)
        best = candidate[arg, np.arange(len(ends))]
        choice.append(arg)
        totals.append(best[-1])
    passes = int(np.argmin(totals)) + 1  # the first of equal totals: fewest passes
    levels, b = [], len(ends) - 1
    for j in range(passes - 1, -1, -1):
        levels.append(int(ends[b]))
        b = int(choice[j][b]) - 1
    return levels[::-1]


__all__ = ["MAX_PASSES", "PASS_COST_MACS", "slot_levels"]
