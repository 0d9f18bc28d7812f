"""Accountant speed and accuracy on the 100-setting grid of issue 22.

Sections (run all, or some with ``--only NAME ...``):

- ``grid``: every accountant (analytic closed form, rdp, pld, prv) on q ∈ {0.001, 0.01, 0.1, 1} × z ∈ {0.5, 0.8, 1, 2, 5}
  × T ∈ {1, 10, 100, 1000, 10000} at δ = 1e-5, cold caches: median and worst seconds per call,
  calls over 1 s, refusals, and the worst relative deviation of ε from the same accountant at its
  library's default precision (PLD: dp-accounting's 1e-4 grid; PRV: Opacus' eps_error 0.01),
  timed in the same process (ratio column). Where the library default itself is refused for
  memory (q = 1, small z, many steps), the deviation is taken from the exact analytic Gaussian,
  which the library default approaches from above; such points are counted and listed.
- ``calibrate``: seconds of :func:`fedguard.privacy.calibrate.calibrate_noise_multiplier` per
  accountant on a few settings.
- ``rqm``: exact RQM Rényi DP at 256 levels (all default orders), cold, then the same mechanism
  with only the number of coordinates changed.

``--quick`` takes every fifth grid setting and skips the library-default references.

Run:  PYTHONPATH=$PWD python benchmarks/accountant_grid.py [--quick] [--only grid calibrate rqm]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from text_table import print_table  # sibling module: the scripts run from benchmarks/

SAMPLING_RATES = (0.001, 0.01, 0.1, 1.0)
NOISE_MULTIPLIERS = (0.5, 0.8, 1.0, 2.0, 5.0)
STEPS = (1, 10, 100, 1000, 10_000)
DELTA = 1e-5


def grid_settings(quick: bool = False) -> list[tuple[float, float, int]]:
    """The 100 (sampling rate, noise multiplier, steps) settings (every fifth with ``quick``)."""
    grid = [(q, z, t) for q in SAMPLING_RATES for z in NOISE_MULTIPLIERS for t in STEPS]
    return grid[::5] if quick else grid


def _cold_caches() -> None:
    from fedguard.privacy import rqm
    from fedguard.privacy.accountants import rdp

    rdp._leaf_rdp_cached.cache_clear()
    rdp._wor_forward_differences.cache_clear()
    for name in dir(rqm):
        cached = getattr(rqm, name)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()


def _call(fn: Callable[[], float]) -> tuple[float, float | None, str | None]:
    """(seconds, value or None, refusal or None), cold caches."""
    from fedguard.errors import IncompatibleError

    _cold_caches()
    start = time.perf_counter()
    try:
        value: float | None = fn()
        refusal = None
    except (IncompatibleError, MemoryError) as err:
        value, refusal = None, str(err) or type(err).__name__
    return time.perf_counter() - start, value, refusal


def _accountants() -> dict[str, tuple[Any, Any]]:
    """name → (the default accountant, the same accountant at its library's default precision
    or None when it has no precision setting)."""
    from fedguard.privacy.accountants import (
        AnalyticGaussianAccountant,
        PldAccountant,
        PrvAccountant,
        RdpAccountant,
    )

    return {
        # the closed form: exact where it applies (q = 1), refused (one sentence) elsewhere
        "analytic": (AnalyticGaussianAccountant(), None),
        "rdp": (RdpAccountant(), None),
        "pld": (PldAccountant(), PldAccountant(value_discretization_interval=1e-4)),
        "prv": (PrvAccountant(), PrvAccountant(eps_error=0.01)),
    }


def bench_grid(quick: bool = False) -> None:
    """Seconds per call and deviation from the library default, every accountant, 100 settings."""
    from fedguard.privacy.accountants.analytic import gaussian_epsilon
    from fedguard.privacy.events import sampled_gaussian

    settings = grid_settings(quick)
    rows: list[tuple[str, ...]] = []
    details: list[str] = []
    for name, (fast, reference) in _accountants().items():
        # imports and first-call set-up (dp-accounting, Opacus, scipy.fft) are paid once per
        # process and not counted
        fast.epsilon(sampled_gaussian(1.0 if name == "analytic" else 0.01, 1.0, 10), DELTA)
        seconds: list[float] = []
        ref_seconds: list[float] = []
        worst = {"grid": (0.0, ""), "closed form": (0.0, "")}
        slow, refused, exact_refs = 0, 0, 0
        for q, z, t in settings:
            event = sampled_gaussian(q, z, t)
            elapsed, eps, refusal = _call(partial(fast.epsilon, event, DELTA))
            seconds.append(elapsed)
            where = f"{name} q={q:g} z={z:g} T={t}"
            if elapsed > 1.0:
                slow += 1
                details.append(f"{where}: {elapsed:.2f} s")
            if refusal is not None:
                refused += 1
                if name != "analytic":  # the closed form refuses every q < 1 by design
                    details.append(f"{where}: refused ({refusal})")
                continue
            if reference is None or quick:
                continue
            ref_elapsed, ref_eps, ref_refusal = _call(partial(reference.epsilon, event, DELTA))
            ref_seconds.append(ref_elapsed)
            if ref_refusal is not None and q == 1:
                ref_eps, exact_refs = gaussian_epsilon(math.sqrt(t) / z, DELTA), exact_refs + 1
            if ref_eps is None or eps is None:
                continue
            deviation = abs(eps - ref_eps) / max(ref_eps, 1e-12)
            kind = "closed form" if q == 1 else "grid"
            if deviation >= worst[kind][0]:
                worst[kind] = (deviation, f"q={q:g} z={z:g} T={t}: {eps:.6g} vs {ref_eps:.6g}")
        med, top = statistics.median(seconds), max(seconds)
        ratio = f"{sum(ref_seconds) / sum(seconds):.1f}×" if ref_seconds else "n/a"
        if not ref_seconds:
            devs = ["skipped (--quick)" if quick else "n/a (no precision setting)"] * 2
        else:
            devs = [f"{worst[k][0]:.2e} ({worst[k][1]})" for k in ("grid", "closed form")]
            if exact_refs:
                devs[1] += f"; {exact_refs} library refusals: vs exact"
        rows.append(
            (
                name,
                f"{med:.3f}",
                f"{top:.3f}",
                f"{slow}/{len(settings)}",
                str(refused),
                f"{sum(seconds):.1f}",
                f"{sum(ref_seconds):.1f}" if ref_seconds else "n/a",
                ratio,
                *devs,
            )
        )
    for line in details:
        print(line)
    print_table(
        f"accountants on {len(settings)} settings (δ = {DELTA:g}; seconds per call, cold caches, "
        "warm process). Library default = the same accountant at the library's default "
        "precision (PLD: dp-accounting's 1e-4 grid, run by fedguard's vectorised fixed-grid "
        "mode; PRV: Opacus with eps_error 0.01), same process. Deviation = |ε − ε_library| / "
        "ε_library; q < 1 answered on a grid, q = 1 by the exact closed form (below the "
        "library's upper bound)",
        (
            "accountant",
            "median s",
            "worst s",
            "> 1 s",
            "refused",
            "total s",
            "library-default total s",
            "speed-up",
            "worst deviation, q < 1",
            "worst deviation, q = 1 (exact)",
        ),
        rows,
    )


CALIBRATE_SETTINGS = ((1.0, 0.01, 1000), (8.0, 0.1, 10_000), (2.0, 1.0, 100), (0.5, 0.001, 10_000))


def bench_calibrate() -> None:
    """Seconds of noise calibration (target ε, q, T; δ = 1e-5) per accountant."""
    from fedguard.privacy.calibrate import calibrate_noise_multiplier

    rows = []
    for name in ("rdp", "pld", "prv"):
        for target, q, t in CALIBRATE_SETTINGS:
            cpu = time.process_time()
            elapsed, z, refusal = _call(
                partial(calibrate_noise_multiplier, target, DELTA, t, q, accountant=name)
            )
            cpu = time.process_time() - cpu
            rows.append(
                (
                    name,
                    f"ε={target:g} q={q:g} T={t}",
                    f"{elapsed:.2f}",
                    f"{cpu:.2f}",
                    refusal or f"{z:.4f}",
                )
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(
        f"calibrate (δ = 1e-5, rtol 1e-3; cold caches, the first call of each accountant pays "
        f"its imports; load average {load:.1f})",
        ("accountant", "target", "wall s", "CPU s", "z"),
        rows,
    )


def bench_rqm() -> None:
    """Exact RQM RDP at 256 levels, cold; then only the dimension changed."""
    from fedguard.privacy.accountants import RdpAccountant
    from fedguard.privacy.events import RandomizedQuantization

    acc = RdpAccountant()
    base = dict(clip=1.0, padding=1.0, levels=256, keep_probability=0.5)
    rows = []
    _cold_caches()
    for coordinates in (1, 1000, 100_000):
        event = RandomizedQuantization(**base, coordinates=coordinates)  # type: ignore[arg-type]
        start = time.perf_counter()
        eps = acc.epsilon(event, DELTA)
        rows.append((str(coordinates), f"{time.perf_counter() - start:.3f}", f"{eps:.4g}"))
    print_table(
        "RQM exact RDP, 256 levels, all default orders (first row cold; the others change only "
        "the number of coordinates)",
        ("coordinates", "seconds", f"ε (δ = {DELTA:g})"),
        rows,
    )


SECTIONS: dict[str, Callable[..., None]] = {
    "grid": bench_grid,
    "calibrate": bench_calibrate,
    "rqm": bench_rqm,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="every fifth setting, no references")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="opacus")
    for name in args.only:
        if name == "grid":
            bench_grid(args.quick)
        else:
            SECTIONS[name]()


if __name__ == "__main__":
    main()
