"""Speed of a round (issue 17's "Done when"), each figure against its baseline in this process.

1. digits, 100 IID clients (~14 samples each), MLP 64-32-10, 1 local epoch, batch 8, lr 0.05:
   ms per round of fedguard's vectorized trainer (the trainer alone, and the whole round of
   :class:`~fedguard.core.simulation.Simulation` without evaluation) against a plain one-thread
   PyTorch loop (``nn.Module`` + ``torch.optim.SGD``, client after client, then the mean) run
   interleaved with it; peak memory of each: the whole job's peak resident memory (a fresh
   process per run builds the same simulation, then runs 5 rounds of one loop; also a loop
   with the SGD step written out, without ``torch.optim``), and the round's own working memory
   (peak RSS growth over one round after a warm-up, fresh process each).
2. synthetic data (64 features, 10 classes, ~14 samples per client), 1,000 and 10,000 clients
   per round: s per round (whole round), cost per client and its growth from 1,000 to 10,000,
   peak memory in copies of the stacked parameters (n·d float32).
3. ``fedguard run configs/quickstart.yaml``: wall and CPU seconds beyond
   ``python -c "import torch"`` (both in fresh subprocesses, interleaved).
4. the quickstart matrix (108 cells, default flags): CPU seconds per cell and wall seconds, alone
   and with another process busy on one core (interleaved).

Every figure is the median of interleaved trials with its spread (min–max); the machine may be
shared (the load average is printed at the start and the end), so compare ratios, not absolute
times, across runs. One torch thread throughout (``OMP_NUM_THREADS=1`` in subprocesses).

    PYTHONPATH=$PWD python benchmarks/bench_core.py [--trials 7] [--skip-10k] [--only digits matrix ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from bench_workloads import (
    peak_rss_over,
    rss_kib,
)  # sibling module: the scripts run from benchmarks/


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.4g} (min {min(xs):.4g}, max {max(xs):.4g}, n={len(xs)})"


def spec(dataset: Any, n_clients: int, rounds: int = 1000) -> Any:
    from fedguard.config import parse_spec

    return parse_spec(
        {
            "name": f"bench-{n_clients}",
            "rounds": rounds,
            "eval_every": rounds,
            "data": {
                "dataset": dataset,
                "test_fraction": 0.2,
                "validation_fraction": 0.0,
                "partition": "iid",
            },
            "model": {"name": "mlp", "hidden": [32]},
            "clients": {"n_clients": n_clients},
            "training": {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.05},
        }
    )


def synthetic(n_clients: int) -> dict[str, Any]:
    return {
        "name": "synthetic",
        "n_samples": int(n_clients * 14 / 0.8),
        "n_features": 64,
        "n_classes": 10,
        "n_informative": 16,
    }


def plain_loop(sim: Any, optimizer: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """A plain PyTorch round: each client trains an ``nn.Module`` with ``torch.optim.SGD`` on
    its own shuffled batches (torch.randperm), then the server takes the mean delta.

    ``optimizer=False``: the same round with the SGD step written out (``p -= lr · p.grad``),
    for the memory comparison (``torch.optim``'s first step imports ``torch._dynamo``)."""
    module = sim.model.module
    data, local = sim.clients, sim.local
    gen = torch.Generator().manual_seed(0)

    def round_(params: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(params)
        for c in range(len(data.counts)):
            n = int(data.counts[c])
            x, y = data.features[c, :n], data.labels[c, :n]
            torch.nn.utils.vector_to_parameters(params, module.parameters())
            opt = (
                torch.optim.SGD(module.parameters(), lr=local.learning_rate) if optimizer else None
            )
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, local.batch_size):
                batch = order[start : start + local.batch_size]
                module.zero_grad()
                torch.nn.functional.cross_entropy(module(x[batch]), y[batch]).backward()
                if opt is not None:
                    opt.step()
                else:
                    with torch.no_grad():
                        for p in module.parameters():
                            p.add_(p.grad, alpha=-local.learning_rate)
            total += torch.nn.utils.parameters_to_vector(module.parameters()).detach() - params
        return params + total / len(data.counts)

    return round_


def vectorized_trainer(sim: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    from fedguard.core.local_training import train_vectorized

    ids = list(range(len(sim.clients.counts)))

    def round_(params: torch.Tensor) -> torch.Tensor:
        deltas = train_vectorized(sim.model, params, sim.clients, ids, sim.local, 0, 0)
        return params + deltas.mean(dim=0)

    return round_


def bench_digits(trials: int) -> dict[str, Any]:
    from fedguard.launch import build_simulation

    sim = build_simulation(spec("digits", 100))
    plain, trainer = plain_loop(sim), vectorized_trainer(sim)
    state = sim.initial_state()
    p_plain = p_vec = state.params
    state, _ = sim.run_round(state)  # warm-up
    p_plain, p_vec = plain(p_plain), trainer(p_vec)
    times: dict[str, list[float]] = {"plain loop": [], "vectorized trainer": [], "round": []}
    for _ in range(trials):
        start = time.perf_counter()
        p_plain = plain(p_plain)
        times["plain loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        p_vec = trainer(p_vec)
        times["vectorized trainer"].append(time.perf_counter() - start)
        state, out = sim.run_round(state)
        times["round"].append(out.record["compute_seconds"])
    base = statistics.median(times["plain loop"])
    print("\ndigits, 100 IID clients, MLP 64-32-10, batch 8, one thread (interleaved trials)")
    print(f"{'path':<36}{'ms/round: median (min, max, n)':<48}{'x plain loop':>12}")
    for name, label in (
        ("plain loop", "plain PyTorch loop (baseline)"),
        ("vectorized trainer", "fedguard vectorized trainer"),
        ("round", "fedguard whole round (no eval)"),
    ):
        ms = [1e3 * t for t in times[name]]
        print(f"{label:<36}{_median(ms):<48}{base / statistics.median(times[name]):>12.1f}")
    return {k: statistics.median(v) for k, v in times.items()}


#: issue 17's goals, printed next to the figures they judge
GOAL_10K_SECONDS = 0.3  # s per round at 10,000 clients
GOAL_PER_CLIENT_GROWTH = 1.5  # cost per client, 10,000 vs 1,000 clients
GOAL_MATRIX_CPU_PER_CELL = 0.25  # CPU s per cell of the quickstart matrix
GOAL_MATRIX_BUSY_RATIO = 1.8  # wall with one core busy / wall alone


def _verdict(value: float, goal: float) -> str:
    return f"goal <= {goal:g}: {'met' if value <= goal else 'NOT met'}"


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_scaling(trials: int, sizes: list[int]) -> None:
    """Whole rounds (``compute_seconds``: wall, without evaluation) and this process's CPU
    seconds per round, interleaved across sizes; the 1,000-client round is the baseline of the
    cost per client."""
    from fedguard.launch import build_simulation

    print("\nsynthetic, 64 features, ~14 samples/client, MLP 64-32-10, batch 8, one thread")
    print(f"load average before: {_load()}")
    print(
        f"{'clients':>8}  {'wall s/round: median (min, max, n)':<48}"
        f"{'CPU s/round: median (min, max, n)':<48}{'CPU ms/1k clients':>18}"
    )
    sims = {n: build_simulation(spec(synthetic(n), n)) for n in sizes}
    states = {n: sims[n].run_round(sims[n].initial_state())[0] for n in sizes}  # warm-up
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    cpus: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(trials):
        for n in sizes:
            cpu = time.process_time()
            states[n], out = sims[n].run_round(states[n])
            cpus[n].append(time.process_time() - cpu)
            walls[n].append(out.record["compute_seconds"])
    per_client = {}
    for n in sizes:
        per_client[n] = statistics.median(cpus[n]) / n
        print(f"{n:>8}  {_median(walls[n]):<48}{_median(cpus[n]):<48}{1e6 * per_client[n]:>18.3f}")
    print(f"load average after: {_load()}")
    if 10000 in sizes:
        wall, cpu = statistics.median(walls[10000]), statistics.median(cpus[10000])
        print(
            f"10,000 clients: {wall:.3f} s/round wall, {cpu:.3f} CPU s/round "
            f"({_verdict(wall, GOAL_10K_SECONDS)} on wall; {_verdict(cpu, GOAL_10K_SECONDS)} on CPU)"
        )
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        growth = per_client[hi] / per_client[lo]
        print(
            f"CPU cost per client, {hi:,} vs {lo:,} clients (baseline): {growth:.2f}x "
            f"({_verdict(growth, GOAL_PER_CLIENT_GROWTH)})"
        )


# ---------------------------------------------------------------------------------- memory


def _probe(kind: str, n_clients: int) -> dict[str, float]:
    """Run in a fresh process: peak RSS growth (bytes) over one round of ``kind``, after a
    warm-up round (one-time library set-up is not the round's memory); the peak is reset
    through ``/proc/self/clear_refs`` (Linux)."""
    from fedguard.launch import build_simulation

    torch.set_num_threads(1)
    dataset: Any = "digits" if n_clients == 100 else synthetic(n_clients)
    sim = build_simulation(spec(dataset, n_clients))
    state = sim.initial_state()
    plain = plain_loop(sim) if kind == "plain" else None

    def one_round() -> None:
        if plain is not None:
            plain(state.params)
        else:
            sim.run_round(state)

    one_round()
    from fedguard.core import client_stack

    client_stack._WORKSPACE = []  # the measured round allocates its gradient workspace afresh
    # freed heap goes back to the OS first, for both loops alike: otherwise a round that reuses
    # blocks the warm-up round freed shows no growth, and the figure measures the allocator's
    # reuse rather than the memory the round works in
    growth_mib = peak_rss_over(one_round)
    if growth_mib is None:
        raise RuntimeError("peak RSS needs Linux (/proc/self/clear_refs) and glibc")
    stacked = n_clients * state.params.numel() * state.params.element_size()
    return {"growth": growth_mib * 2**20, "stacked": float(stacked)}


#: rounds of the whole-job memory probe
JOB_ROUNDS = 5
#: the loops of the whole-job probe, in the order printed
JOB_KINDS = {
    "plain": "plain loop (torch.optim.SGD, the speed baseline)",
    "plain-sgd": "plain loop, SGD step written out (no torch.optim)",
    "vectorized": "fedguard round (Simulation.run_round)",
}


def _job_probe(kind: str, n_clients: int) -> dict[str, float]:
    """Run in a fresh process: the whole job's peak resident memory (VmHWM, bytes) — build the
    digits simulation (the same data and imports for every loop), then :data:`JOB_ROUNDS`
    rounds of ``kind`` — and the resident memory before the first round."""
    from fedguard.launch import build_simulation

    torch.set_num_threads(1)
    dataset: Any = "digits" if n_clients == 100 else synthetic(n_clients)
    sim = build_simulation(spec(dataset, n_clients))
    state = sim.initial_state()
    before = {f: _status_kib(f) for f in ("VmRSS", "RssAnon", "RssFile")}
    if kind == "vectorized":
        for _ in range(JOB_ROUNDS):
            state, _ = sim.run_round(state)
    else:
        round_, params = plain_loop(sim, optimizer=kind == "plain"), state.params
        for _ in range(JOB_ROUNDS):
            params = round_(params)
    return {
        "peak": _status_kib("VmHWM") * 1024.0,
        "before": before["VmRSS"] * 1024.0,
        # what the rounds added: data (anonymous) and the code pages of the kernels they ran
        "anon": (_status_kib("RssAnon") - before["RssAnon"]) * 1024.0,
        "file": (_status_kib("RssFile") - before["RssFile"]) * 1024.0,
    }


def _status_kib(field: str) -> int:
    kib = rss_kib(field)
    if kib is None:
        raise RuntimeError(f"/proc/self/status has no {field} (peak RSS needs Linux)")
    return kib


def _probe_in_subprocess(kind: str, n_clients: int, probe: str = "_probe") -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import bench_core; "
        f"print(json.dumps(bench_core.{probe}({kind!r}, {n_clients})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(sizes: list[int]) -> None:
    print(
        "\npeak memory of one round (peak RSS growth after a warm-up round, freed heap returned to "
        "the OS before it; fresh process each)"
    )
    plain = _probe_in_subprocess("plain", 100)
    vec = _probe_in_subprocess("vectorized", 100)
    ratio = (
        f"{vec['growth'] / plain['growth']:.1f}x the plain loop's"
        if plain["growth"] > 0
        else "the plain loop did not grow: no ratio"
    )
    print(
        f"digits 100 clients: plain loop {plain['growth'] / 2**10:.0f} KiB, fedguard round "
        f"{vec['growth'] / 2**10:.0f} KiB ({ratio}); stacked parameters "
        f"{vec['stacked'] / 2**10:.0f} KiB"
    )
    bench_job_memory()
    for n in sizes:
        probe = _probe_in_subprocess("vectorized", n)
        print(
            f"synthetic {n:,} clients: {probe['growth'] / 2**20:.0f} MiB = "
            f"{probe['growth'] / probe['stacked']:.2f} copies of the stacked parameters "
            f"({probe['stacked'] / 2**20:.0f} MiB)"
        )


def bench_job_memory(runs: int = 3) -> None:
    """Issue 17's "peak memory ≤ the plain loop's" as the process's peak: each loop's whole job
    in fresh processes (``runs`` each, interleaved), the same data and imports for all."""
    peaks: dict[str, list[float]] = {kind: [] for kind in JOB_KINDS}
    probes: dict[str, list[dict[str, float]]] = {kind: [] for kind in JOB_KINDS}
    for _ in range(runs):
        for kind in JOB_KINDS:
            probe = _probe_in_subprocess(kind, 100, "_job_probe")
            peaks[kind].append(probe["peak"] / 2**20)
            probes[kind].append(probe)
    print(
        f"digits 100 clients, whole job (build the simulation, then {JOB_ROUNDS} rounds; fresh "
        f"process each, {runs} runs), peak resident memory, MiB [min–max]:"
    )
    for kind, label in JOB_KINDS.items():

        def mib(key: str, kind: str = kind) -> float:
            return statistics.median(p[key] for p in probes[kind]) / 2**20

        print(
            f"  {label}: {statistics.median(peaks[kind]):.1f} [{min(peaks[kind]):.1f}–"
            f"{max(peaks[kind]):.1f}]; before the first round {mib('before'):.1f}, the rounds "
            f"added {mib('anon'):.1f} of data and {mib('file'):.1f} of code pages"
        )
    ours, baseline = max(peaks["vectorized"]), min(peaks["plain"])
    print(
        f"  goal: peak ≤ the plain loop's (largest fedguard run {ours:.1f} against the smallest "
        f"plain-loop run {baseline:.1f}): {'met' if ours <= baseline else 'not met'}; without "
        f"torch.optim the loop peaks at {statistics.median(peaks['plain-sgd']):.1f}"
    )


# ---------------------------------------------------------------------------------- start-up


def _child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_child(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one subprocess run to completion."""
    cpu, start = _child_cpu(), time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start, _child_cpu() - cpu


def bench_startup(trials: int) -> None:
    """``fedguard run configs/quickstart.yaml`` against ``python -c "import torch"``, fresh
    processes, interleaved: wall and CPU seconds beyond the import of torch (CPU seconds move
    less than wall time when other jobs share the machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs: dict[str, list[tuple[float, float]]] = {"torch": [], "quickstart": []}
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(trials):
            runs["torch"].append(_timed_child([sys.executable, "-c", "import torch"], env))
            command = ["-m", "fedguard.cli.main", "run", "configs/quickstart.yaml"]
            runs["quickstart"].append(
                _timed_child([sys.executable, *command, "--out", f"{tmp}/run{t}"], env)
            )
    print("\nfedguard run configs/quickstart.yaml (fresh processes, OMP_NUM_THREADS=1)")
    for i, unit in ((0, "wall"), (1, "CPU")):
        torch_only = [r[i] for r in runs["torch"]]
        quickstart = [r[i] for r in runs["quickstart"]]
        beyond = [q - t for q, t in zip(quickstart, torch_only, strict=True)]
        print(f"python -c 'import torch' (baseline), {unit} s: {_median(torch_only)}")
        print(f"fedguard run quickstart, {unit} s:             {_median(quickstart)}")
        print(f"{unit} s beyond import torch:                  {_median(beyond)}")


def _busy_core(seconds: float) -> subprocess.Popen[bytes]:
    """Another process keeping one core busy (a pure-Python loop) for ``seconds``."""
    loop = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", loop])


def bench_matrix(trials: int) -> None:
    """The quickstart matrix (``fedguard matrix configs/matrices/quickstart.yaml``, default
    flags: one worker per usable core) in a fresh process: wall seconds and CPU seconds per
    cell (the CLI process and its workers together), alone and with another process busy on
    one core, interleaved. Baseline: the same cells run directly in this process (no CLI, no
    workers, no outputs), CPU seconds per cell."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = "configs/matrices/quickstart.yaml"
    cells = _direct_cells(config)
    runs: dict[str, list[tuple[float, float]]] = {"alone": [], "one core busy": []}
    loads: list[str] = []
    direct: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(trials):
            direct.append(_direct_cpu_per_cell(cells[t % 3 :: 3]))
            for label in runs:
                command = [sys.executable, "-m", "fedguard.cli.main", "matrix"]
                command += [config, "--out", f"{tmp}/{label}{t}"]
                busy = _busy_core(3600) if label != "alone" else None
                try:
                    runs[label].append(_timed_child(command, env))
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                loads.append(_load())
    n = len(cells)
    print(f"\nquickstart matrix, {n} cells, default flags (fresh processes, interleaved)")
    print(f"load average after each matrix run: {'; '.join(loads)}")
    alone = statistics.median(r[0] for r in runs["alone"])
    for label, values in runs.items():
        walls, cpus = [r[0] for r in values], [r[1] / n for r in values]
        ratio = statistics.median(walls) / alone
        print(f"{label:<14} wall s: {_median(walls)}  (x{ratio:.2f} the median alone)")
        print(f"{'':<14} CPU s per cell: {_median(cpus)}")
    cpu = statistics.median(r[1] / n for r in runs["alone"])
    busy_ratio = statistics.median(r[0] for r in runs["one core busy"]) / alone
    base = statistics.median(direct)
    print(
        f"baseline: the same cells run directly in this process (a third of them per trial), "
        f"CPU s per cell: {_median(direct)}; the matrix command adds {cpu - base:.3f} CPU s per "
        "cell (its start-up, the workers' imports, results and outputs)"
    )
    print(f"CPU s per cell alone: {cpu:.3f} ({_verdict(cpu, GOAL_MATRIX_CPU_PER_CELL)})")
    print(
        f"wall with one core busy / alone: {busy_ratio:.2f} "
        f"({_verdict(busy_ratio, GOAL_MATRIX_BUSY_RATIO)})"
    )


def _direct_cells(config: str) -> list[dict[str, Any]]:
    from pathlib import Path

    from fedguard.matrix.runner import plan_matrix

    plan = plan_matrix(Path(config), confirmed=True)
    return [c.spec.model_dump(mode="json") for c in plan.cells]


def _direct_cpu_per_cell(cells: list[dict[str, Any]]) -> float:
    """CPU seconds per cell of ``cells`` run one after the other in this process."""
    from fedguard.matrix.cell import run_cell

    run_cell(cells[0])  # warm-up: lazy imports and first calls are not a cell's cost
    cpu = time.process_time()
    for cell in cells:
        run_cell(cell)
    return (time.process_time() - cpu) / len(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--skip-10k", action="store_true")
    sections = ["digits", "scaling", "memory", "startup", "matrix"]
    ap.add_argument("--only", nargs="+", choices=sections, default=sections)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs visible, "
        f"load average (1, 5, 15 min) at start: {load}"
    )
    sizes = [1000] + ([] if args.skip_10k else [10000])
    if "digits" in args.only:
        bench_digits(args.trials)
    if "scaling" in args.only:
        bench_scaling(max(3, args.trials // 2), sizes)
    if "memory" in args.only:
        bench_memory(sizes)
    if "startup" in args.only:
        bench_startup(max(3, args.trials // 2))
    if "matrix" in args.only:
        bench_matrix(max(1, args.trials // 4))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average (1, 5, 15 min) at the end: {load}")


if __name__ == "__main__":
    main()
