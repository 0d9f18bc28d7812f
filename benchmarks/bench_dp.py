"""Differential-privacy benchmarks.

Sections (run all, or some with ``--only NAME ...``):

- ``accountants``: time to account 10⁴ steps (q = 0.01, z = 1, δ = 1e-5) with each accountant,
  cold caches, against fedguard's RDP accountant in the same process (ratio column);
- ``rqm``: time of the exact RQM Rényi-DP computation (worst case searched over inputs, all
  default orders) for m ∈ {4, 16, 64} levels, against m = 4.

- ``dp_sgd``: DP-SGD samples/s of Opacus vs fedguard's torch.func per-sample path vs
  non-private training, same model and batch, same process (ratio against non-private).
- ``dp_trainer``: a DP-SGD round of the vectorized trainer (ghost norms, and the vmap
  reference) against the non-private vectorized round: MLP, CNN and LeNet-5, 10 and 100
  clients (issue 17).
- ``accountant_grid``: every accountant on 100 settings against the library default, calibrate,
  exact RQM (issue 22, ``benchmarks/accountant_grid.py``);
- ``dp_ftrl``: DP-FTRL / BandMF error of the noisy prefix sums and utility at equal ε (issue 22,
  ``benchmarks/dp_ftrl_section.py``).

Further sections are functions ``bench_<name>() -> None`` added to ``SECTIONS``.

Run:  PYTHONPATH=$PWD python benchmarks/bench_dp.py [--only accountants rqm]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from text_table import print_table  # sibling module: the scripts run from benchmarks/


def _timed(fn: Callable[[], float], repeats: int = 1) -> tuple[float, float]:
    """(best wall seconds over ``repeats``, the function's value)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench_accountants() -> None:
    """ε of 10⁴ Poisson-subsampled Gaussian steps with every accountant (cold caches)."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant
    from opacus.accountants import RDPAccountant as OpacusRdp

    from fedguard.privacy.accountants import DEFAULT_ORDERS, get_accountant
    from fedguard.privacy.accountants import rdp as rdp_module
    from fedguard.privacy.events import sampled_gaussian

    logging.getLogger("absl").setLevel(logging.ERROR)
    q, z, steps, delta = 0.01, 1.0, 10_000, 1e-5
    poisson = sampled_gaussian(q, z, steps)
    fixed = sampled_gaussian(q, z, steps, scheme="fixed", population=100_000)
    full = sampled_gaussian(1.0, 50.0, steps)

    def fedguard(name: str, event: object) -> Callable[[], float]:
        def run() -> float:
            rdp_module._leaf_rdp_cached.cache_clear()
            rdp_module._wor_forward_differences.cache_clear()
            return get_accountant(name).epsilon(event, delta)  # type: ignore[arg-type]

        return run

    def opacus_rdp() -> float:
        acc = OpacusRdp()
        acc.history = [(z, q, steps)]
        return float(acc.get_epsilon(delta))

    def dpa_rdp(relation: object, inner: object) -> Callable[[], float]:
        def run() -> float:
            acc = rdp_privacy_accountant.RdpAccountant(
                orders=DEFAULT_ORDERS,
                neighboring_relation=relation,  # type: ignore[arg-type]
            )
            acc.compose(dp_accounting.SelfComposedDpEvent(inner, steps))  # type: ignore[arg-type]
            return float(acc.get_epsilon(delta))

        return run

    gaussian = dp_accounting.GaussianDpEvent(z)
    cases: list[tuple[str, str, Callable[[], float]]] = [
        ("fedguard rdp", "poisson", fedguard("rdp", poisson)),
        ("fedguard pld (dp-accounting)", "poisson", fedguard("pld", poisson)),
        ("fedguard prv (opacus)", "poisson", fedguard("prv", poisson)),
        ("fedguard rdp", "fixed cohort", fedguard("rdp", fixed)),
        ("fedguard analytic", "q = 1, z = 50", fedguard("analytic", full)),
        ("opacus RDPAccountant (orders <= 63)", "poisson", opacus_rdp),
        (
            "dp-accounting RdpAccountant, same orders",
            "poisson",
            dpa_rdp(
                dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                dp_accounting.PoissonSampledDpEvent(q, gaussian),
            ),
        ),
        (
            "dp-accounting RdpAccountant, same orders",
            "fixed cohort",
            dpa_rdp(
                dp_accounting.NeighboringRelation.REPLACE_ONE,
                dp_accounting.SampledWithoutReplacementDpEvent(100_000, 1000, gaussian),
            ),
        ),
    ]
    results = [(name, kind, *_timed(fn)) for name, kind, fn in cases]
    baseline = results[0][2]
    rows = [
        (name, kind, f"{eps:.4f}", f"{seconds * 1e3:.1f}", f"{seconds / baseline:.2f}")
        for name, kind, seconds, eps in results
    ]
    print_table(
        f"Accountant time, {steps} steps, q = {q}, z = {z}, delta = {delta} "
        "(ratio vs fedguard rdp)",
        ("accountant", "sampling", "epsilon", "ms", "ratio"),
        rows,
    )


def bench_rqm() -> None:
    """Exact RQM RDP (worst case over inputs, every default order) for m ∈ {4, 16, 64}."""
    from fedguard.privacy.accountants import DEFAULT_ORDERS
    from fedguard.privacy.rqm import rqm_coordinate_rdp, rqm_input_grid

    clip, padding, keep = 1.0, 0.5, 0.5
    results = []
    for m in (4, 16, 64):
        seconds, _ = _timed(
            lambda m=m: float(
                rqm_coordinate_rdp(clip, padding, m, keep, DEFAULT_ORDERS)[0]  # type: ignore[misc]
            )
        )
        rdp = rqm_coordinate_rdp(clip, padding, m, keep, DEFAULT_ORDERS)
        grid = rqm_input_grid(clip, padding, m, 33).size
        results.append((m, grid, seconds, float(np.min(rdp)), float(np.max(rdp))))
    baseline = results[0][2]
    rows = [
        (str(m), str(g), f"{s * 1e3:.0f}", f"{s / baseline:.1f}", f"{lo:.3f} .. {hi:.3f}")
        for m, g, s, lo, hi in results
    ]
    print_table(
        f"RQM accounting, c = {clip}, padding = {padding}, q = {keep}, "
        f"{len(DEFAULT_ORDERS)} orders (ratio vs m = 4)",
        ("levels m", "grid inputs", "ms", "ratio", "per-coordinate RDP range"),
        rows,
    )


def bench_dp_sgd() -> None:
    """DP-SGD steps/s: Opacus vs the torch.func per-sample path vs non-private SGD.

    Same model (MLP 64-32-10, the digits shape), same batch (64 samples), per-sample clipping to
    1.0 and noise multiplier 1.0; the torch.func path is also timed on 10 clients at once (its
    use in the vectorized trainer). Ratio = samples/s against non-private training.
    """
    import warnings

    import torch
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from torch import nn

    from fedguard.core.local_training import clipped_gradient_sum
    from fedguard.models.flat import FlatModel

    warnings.filterwarnings("ignore", message="Full backward hook")
    torch.set_num_threads(1)
    batch, clients, repeats = 64, 10, 30
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 64, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    plain = model()
    opt = torch.optim.SGD(plain.parameters(), lr=0.05)

    def step_plain() -> float:
        opt.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        opt.step()
        return float(batch)

    gsm = GradSampleModule(model(), loss_reduction="mean")
    dp_opt = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.05),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        expected_batch_size=batch,
    )

    def step_opacus() -> float:
        dp_opt.zero_grad()
        nn.functional.cross_entropy(gsm(x), y).backward()
        dp_opt.step()
        return float(batch)

    flat = FlatModel.of(model())
    params = flat.initial_params()

    def func_step(n: int) -> Callable[[], float]:
        p = params.expand(n, -1).clone()
        xs, ys, mask = x.expand(n, -1, -1), y.expand(n, -1), torch.ones(n, batch)
        noise_gen = torch.Generator().manual_seed(1)

        def step() -> float:
            nonlocal p
            total = clipped_gradient_sum(flat, p, xs, ys, mask, 1.0)
            noise = torch.randn(p.shape, generator=noise_gen)
            p = p - 0.05 * (total + noise) / batch
            return float(n * batch)

        return step

    def rate(fn: Callable[[], float]) -> float:
        fn()  # warm-up
        start = time.perf_counter()
        done = sum(fn() for _ in range(repeats))
        return done / (time.perf_counter() - start)

    base = rate(step_plain)
    rows = [("non-private (nn.Module + SGD)", base)]
    rows.append(("Opacus (GradSampleModule + DPOptimizer)", rate(step_opacus)))
    rows.append(("torch.func per-sample, 1 client", rate(func_step(1))))
    rows.append((f"torch.func per-sample, {clients} clients vmapped", rate(func_step(clients))))
    print_table(
        f"DP-SGD throughput (MLP 64-32-10, batch {batch}, 1 thread)",
        ("path", "samples/s", "× non-private"),
        [(name, f"{r:,.0f}", f"{r / base:.2f}") for name, r in rows],
    )


def bench_dp_trainer() -> None:
    """DP-SGD round of the vectorized trainer vs the non-private vectorized round, interleaved.

    MLP 64-32-10 on 64 features, the bundled CNN (channels 8, 16) on 1×8×8 images (every client
    128 samples, batch 64: 2 steps a round, Poisson batches of expected size 64 for DP-SGD) and
    LeNet-5 on FEMNIST-shaped 1×28×28 images, 62 classes (32 samples, batch 16: 2 steps); clip
    1, noise multiplier 1, one thread; 10 and 100 clients. For the MLP also the vmap per-sample
    reference path (what DP-SGD used before ghost norms). Medians of 9 interleaved trials of the
    process's CPU time (one thread: the round's compute, less disturbed than wall time by other
    jobs on the machine) and wall time; ratio = DP round / non-private round (CPU), same model
    and cohort, with the range of the per-trial ratios (each DP trial over the non-private
    trial run just before it).
    """
    import os
    import statistics

    import torch

    from fedguard.core.local_training import (
        ClientData,
        DPSGDConfig,
        LocalTrainingConfig,
        train_dp_sgd,
        train_vectorized,
    )
    from fedguard.models.cnn import CNN
    from fedguard.models.flat import FlatModel
    from fedguard.models.lenet import LeNet5
    from fedguard.models.mlp import MLP

    torch.set_num_threads(1)
    dp = DPSGDConfig(noise_multiplier=1.0, clip_norm=1.0)
    rows = []
    load_before = os.getloadavg()
    models = (
        ("MLP 64-32-10", MLP(hidden=(32,)), (64,), 10, 128, 64, True),
        ("CNN 8-16, 1x8x8", CNN(channels=(8, 16)), (1, 8, 8), 10, 128, 64, False),
        ("LeNet-5, 1x28x28", LeNet5(), (1, 28, 28), 62, 32, 16, False),
    )
    for label, model_spec, shape, classes, samples, batch, with_reference in models:
        cfg = LocalTrainingConfig(batch_size=batch, learning_rate=0.05)
        torch.manual_seed(0)
        model = FlatModel.of(model_spec.build(shape, classes))
        p0 = model.initial_params()
        for n in (10, 100):
            gen = torch.Generator().manual_seed(n)
            data = ClientData.pad(
                [torch.randn(samples, *shape, generator=gen) for _ in range(n)],
                [torch.randint(0, classes, (samples,), generator=gen) for _ in range(n)],
            )
            ids = list(range(n))

            def private(
                engine: str,
                m: Any = model,
                p: Any = p0,
                d: Any = data,
                i: list[int] = ids,
                c: Any = cfg,
            ) -> Any:
                return lambda: train_dp_sgd(m, p, d, i, c, dp, 0, 0, engine=engine)

            def plain(
                m: Any = model, p: Any = p0, d: Any = data, i: list[int] = ids, c: Any = cfg
            ) -> Any:
                return lambda: train_vectorized(m, p, d, i, c, 0, 0)

            paths = {"non-private vectorized": plain(), "DP-SGD ghost norms": private("auto")}
            if with_reference:
                paths["DP-SGD vmap reference"] = private("vmap")
            cpu: dict[str, list[float]] = {name: [] for name in paths}
            wall: dict[str, list[float]] = {name: [] for name in paths}
            for fn in paths.values():
                fn()  # warm-up
            for _ in range(9):
                for name, fn in paths.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    cpu[name].append(time.process_time() - start_cpu)
                    wall[name].append(time.perf_counter() - start)
            plain_cpu = cpu["non-private vectorized"]
            base = statistics.median(plain_cpu)
            for name, ts in cpu.items():
                med = statistics.median(ts)
                paired = [a / b for a, b in zip(ts, plain_cpu, strict=True)]
                rows.append(
                    (
                        label,
                        str(n),
                        name,
                        f"{1e3 * med:.1f}",
                        f"{1e3 * min(ts):.1f}-{1e3 * max(ts):.1f}",
                        f"{1e3 * statistics.median(wall[name]):.1f}",
                        f"{med / base:.2f}",
                        f"{min(paired):.2f}-{max(paired):.2f}",
                    )
                )
    load = ", ".join(
        f"{a:.1f} -> {b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True)
    )
    print_table(
        "DP-SGD in the vectorized trainer (2 steps/round, 1 thread; median of 9 interleaved "
        f"trials; ratio vs the non-private round, CPU time; load average 1/5/15 min {load})",
        (
            "model",
            "clients",
            "path",
            "CPU ms/round",
            "min-max CPU ms",
            "wall ms",
            "x non-private",
            "per-trial ratios",
        ),
        rows,
    )


SECTIONS: dict[str, Callable[[], None]] = {
    "accountants": bench_accountants,
    "rqm": bench_rqm,
    "dp_sgd": bench_dp_sgd,
    "dp_trainer": bench_dp_trainer,
    # issue 22's accountant grid, calibrate and exact RQM; DP-FTRL / BandMF error and utility
    "accountant_grid": lambda: __import__("accountant_grid").main([]),
    "dp_ftrl": lambda: __import__("dp_ftrl_section").main([]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    for name in args.only:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
