"""Per-call time and peak memory of every robust aggregator against the core ``mean``.

For n ∈ {10, 100, 1000} updates and d ∈ {10⁴, 10⁶} float32 coordinates (f = max(1, n // 10)), each
rule is timed on the same random update tensor as the ``mean`` baseline measured in this process,
and the table reports milliseconds per call, the ratio to ``mean`` and the peak extra resident
memory during the call (RSS sampled every millisecond by a background thread, minus the RSS before
the call). Cases that would need more than ~8 GiB (input plus the rule's working copies,
estimated) or are predicted to run over a minute (extrapolated from the rule's smaller cases)
are skipped with the reason printed. One torch thread (the machine is shared).

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/bench_robust.py``
(``--quick`` for d = 10⁴ only).
"""

from __future__ import annotations

import argparse
import gc
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fedguard import registry
from fedguard.errors import ConfigError
from fedguard.types import AggregationContext

MEMORY_LIMIT = 8 * 2**30
TIME_LIMIT = 60.0


@dataclass(frozen=True)
class Rule:
    name: str
    build: Callable[[], Any]
    working_copies: float  # estimated extra memory, in multiples of the input tensor
    n_power: int = 1  # time grows like (n ** n_power) · d


def _agg(name: str, **params: Any) -> Callable[[], Any]:
    return lambda: registry.create("aggregator", name, **params)


def _composite(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from fedguard.registry import build_composite as create_composite

        return create_composite(name)

    return build


RULES = [
    Rule("mean", _agg("mean"), 0.1),
    Rule("median", _agg("median"), 2.5),
    Rule("trimmed_mean", _agg("trimmed_mean"), 3.5),
    Rule("geometric_median", _agg("geometric_median"), 4.0),
    Rule("krum", _agg("krum"), 1.5, n_power=2),
    Rule("multi_krum", _agg("multi_krum"), 1.5, n_power=2),
    Rule("bulyan", _agg("bulyan"), 6.0, n_power=2),
    Rule("centered_clipping", _agg("centered_clipping"), 2.5),
    Rule("meamed", _agg("meamed"), 5.0),
    Rule("mda", _agg("mda"), 1.5, n_power=2),
    Rule("cge", _agg("cge"), 1.5),
    Rule("dnc", _agg("dnc"), 1.2, n_power=2),
    Rule("signguard", _agg("signguard"), 1.5, n_power=2),
    Rule("fltrust", _agg("fltrust"), 2.5),
    Rule("foolsgold", _agg("foolsgold"), 5.0, n_power=2),
    Rule("norm_bound", _agg("norm_bound"), 1.5),
    Rule("sign_majority", _agg("sign_majority"), 2.5),
    Rule("nnm+trimmed_mean", _composite("nnm+trimmed_mean"), 5.0, n_power=2),
    Rule("bucketing+centered_clipping", _composite("bucketing+centered_clipping"), 3.0),
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class PeakSampler:
    """Samples the process RSS in a background thread while a call runs."""

    def __enter__(self) -> PeakSampler:
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def time_call(rule: Any, x: torch.Tensor, f: int, repeats: int) -> tuple[float, int]:
    """Best-of-``repeats`` seconds per call and the peak extra RSS of the first call."""
    d = x.shape[1]
    best = math.inf
    peak = 0
    for k in range(repeats):
        ctx = AggregationContext(
            round=1,
            n_byzantine=f,
            generator=torch.Generator().manual_seed(k),
            global_params=torch.zeros(0),
            reference_update=x[0] if getattr(rule, "needs_reference_update", False) else None,
        )
        gc.collect()
        with PeakSampler() as sampler:
            start = time.perf_counter()
            out = rule(x, None, ctx)
            elapsed = time.perf_counter() - start
        del out
        best = min(best, elapsed)
        if k == 0:
            peak = sampler.extra
    assert d == x.shape[1]
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 10^4 only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dims = [10_000] if args.quick else [10_000, 1_000_000]
    sizes = [10, 100, 1000]
    done: dict[str, list[tuple[int, int, float]]] = {}  # rule -> [(n, d, seconds)] measured
    print("robust aggregators: seconds per call vs mean (same tensor, same process), 1 thread")
    for d in dims:
        for n in sizes:
            f = max(1, n // 10)
            input_bytes = n * d * 4
            print(f"\nn = {n}, d = {d:.0e}, f = {f}, input {input_bytes / 2**20:.0f} MiB")
            print(f"{'rule':30s} {'ms/call':>11s} {'× mean':>9s} {'peak MiB':>9s}  note")
            x: torch.Tensor | None = None
            baseline: float | None = None
            for spec in RULES:
                need = input_bytes * (1 + spec.working_copies)
                if need > MEMORY_LIMIT:
                    print(f"{spec.name:30s} skipped: needs ~{need / 2**30:.1f} GiB (> 8 GiB)")
                    continue
                if spec.name in done:  # extrapolate from the rule's smaller cases, take the best
                    predicted = min(
                        t0 * (n / n0) ** spec.n_power * (d / d0) for n0, d0, t0 in done[spec.name]
                    )
                    if predicted > TIME_LIMIT:
                        print(
                            f"{spec.name:30s} skipped: predicted {predicted:.0f} s per call (> 60 s)"
                        )
                        continue
                rule = spec.build()
                try:
                    rule.check_cohort(n, f)
                except ConfigError as exc:
                    print(f"{spec.name:30s} skipped: {exc}")
                    continue
                if x is None:
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn((n, d), generator=gen)
                repeats = 3 if n * d <= 10**7 else 1
                seconds, peak = time_call(rule, x, f, repeats)
                done.setdefault(spec.name, []).append((n, d, seconds))
                if spec.name == "mean":
                    baseline = seconds
                ratio = f"{seconds / baseline:9.1f}" if baseline else f"{'-':>9s}"
                print(f"{spec.name:30s} {seconds * 1e3:11.2f} {ratio} {peak / 2**20:9.0f}")
            del x
            gc.collect()


if __name__ == "__main__":
    main()
