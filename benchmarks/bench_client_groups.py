"""Groups of clients in the vectorized LeNet-5 step (``fedguard.core.stacked_gradients``).

One step's stacked gradients of 100 clients × 16 FEMNIST-shaped images (1×28×28, 62 classes),
computed in the default groups of clients, vs. one group of all 100 (the baseline: what the
trainer did before) and vs. small groups of 4. Interleaved trials in one process, one torch
thread; process CPU seconds, median [min–max], and the ratio of medians to the baseline.

    python benchmarks/bench_client_groups.py [--repeats 9]"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import fedguard.core.stacked_gradients as stacked_gradients
from fedguard.core.client_stack import ClientStack
from fedguard.core.local_training import stacked_plan
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """CPU seconds of each function, the functions taking turns (after one warm-up each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.process_time()
            fn()
            times[name].append(time.process_time() - started)
    return times


def report(times: dict[str, list[float]], baseline: str) -> None:
    base = statistics.median(times[baseline])
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"    {name:42s} {1e3 * med:7.2f} ms [{1e3 * min(values):.2f}–{1e3 * max(values):.2f}]"
            f"  {base / med:.2f}× the {baseline}"
        )


def groups(repeats: int) -> None:
    k, batch = 100, 16
    torch.manual_seed(0)
    model = FlatModel.of(LeNet5().build((1, 28, 28), 62))
    plan = stacked_plan(model, (1, 28, 28))
    assert plan is not None
    g = torch.Generator().manual_seed(1)
    x = torch.randn(k, batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 62, (k, batch), generator=g)
    weight = torch.full((k, batch), 1 / batch)
    stack = ClientStack.of(plan, model.initial_params(), k, False)
    params, out = stack.prefix(k)
    per_client = 2 * batch * plan.activation_elements * x.element_size()
    default = stacked_gradients.CACHE_BYTES

    def step(cache_bytes: int) -> Callable[[], object]:
        def run() -> object:
            stacked_gradients.CACHE_BYTES = cache_bytes
            try:
                return stacked_gradients.stacked_gradients(plan, params, x, y, weight, out)
            finally:
                stacked_gradients.CACHE_BYTES = default

        return run

    size = stacked_gradients.clients_per_group(plan, k, batch, x.element_size())
    print(f"  one LeNet-5 step, {k} clients × {batch} images, in groups of clients")
    times = interleaved(
        {
            "one group of 100": step(k * per_client),
            f"groups of {size} (default)": step(default),
            "groups of 4": step(4 * per_client),
        },
        repeats,
    )
    report(times, "one group of 100")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, CPU; process CPU time, median [min–max]\n")
    groups(args.repeats)


if __name__ == "__main__":
    main()
