"""Matrix throughput: the quickstart matrix with 1 and 2 local workers, per-cell overhead vs the
same runs done directly, and the Ray executor on the local machine.

    python benchmarks/bench_matrix.py [--config configs/matrices/quickstart.yaml] [--skip-ray]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fedguard.launch import execute
from fedguard.matrix.runner import plan_matrix, run_matrix


def timed_matrix(config: Path, workers: int, executor: str = "local") -> tuple[float, int]:
    plan = plan_matrix(config, confirmed=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_matrix(plan, Path(tmp) / "m", workers=workers, executor=executor)
        return time.perf_counter() - started, summary["ran"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/matrices/quickstart.yaml"))
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    plan = plan_matrix(args.config, confirmed=True)
    started = time.perf_counter()
    for cell in plan.cells:
        execute(cell.spec)
    direct = time.perf_counter() - started
    n = len(plan.cells)
    print(f"{args.config}: {n} cells")
    print(f"{'mode':<26}{'wall s':>9}{'cells/s':>9}{'vs direct':>11}")
    print(f"{'direct execute(), 1 thread':<26}{direct:>9.1f}{n / direct:>9.2f}{1.0:>11.2f}")
    one, _ = timed_matrix(args.config, 1)
    print(f"{'matrix, 1 worker':<26}{one:>9.1f}{n / one:>9.2f}{direct / one:>11.2f}")
    two, _ = timed_matrix(args.config, 2)
    print(f"{'matrix, 2 workers':<26}{two:>9.1f}{n / two:>9.2f}{direct / two:>11.2f}")
    print(
        f"speed-up 2 vs 1 worker: {one / two:.2f}x; overhead per cell (1 worker): "
        f"{1000 * (one - direct) / n:.0f} ms"
    )
    if not args.skip_ray:
        ray_s, _ = timed_matrix(args.config, 2, executor="ray")
        print(f"{'ray, local instance':<26}{ray_s:>9.1f}{n / ray_s:>9.2f}{direct / ray_s:>11.2f}")


if __name__ == "__main__":
    main()
