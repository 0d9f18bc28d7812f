"""The field's workloads at their official shapes: vectorized vs sequential local training.

FEMNIST-format: LeNet-5, 100 clients per round, 62 classes, 1×28×28. CIFAR-10-format: ResNet-8-GN,
50 clients per round, 10 classes, 3×32×32. Without the real data (the default) both run on
synthetic stand-ins of those shapes whose class means differ, so accuracy can rise above chance.
For each workload it prints the median seconds of one round of local training (1 epoch, batch 16)
for the vectorized and the sequential trainer in the same process and their ratio, the largest
parameter difference between them (exactness), the vectorized trainer's estimated peak bytes
(fedguard.core.chunked_training) next to the process's peak RSS, and the test accuracy after a
fixed budget of FedAvg rounds (chance = 1/classes).

    python benchmarks/bench_workloads.py [--samples 20] [--repeats 3] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from fedguard.core.chunked_training import bytes_per_client
from fedguard.core.local_training import (
    ClientData,
    LocalTrainingConfig,
    train_sequential,
    train_vectorized,
)
from fedguard.models.flat import FlatModel
from fedguard.models.lenet import LeNet5
from fedguard.models.resnet_gn import ResNet8GN


def stand_in(
    n_clients: int, samples: int, shape: tuple[int, ...], classes: int, seed: int
) -> tuple[ClientData, torch.Tensor, torch.Tensor]:
    """Clients' data and a test set: class-dependent means plus unit noise."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, *shape, generator=gen) * 0.5

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=gen)
        return centers[y] + torch.randn(n, *shape, generator=gen), y

    parts = [draw(samples) for _ in range(n_clients)]
    test_x, test_y = draw(1000)
    return ClientData.pad([p[0] for p in parts], [p[1] for p in parts]), test_x, test_y


def timed(fn, repeats: int) -> tuple[float, float, torch.Tensor]:
    """Median wall seconds, median process CPU seconds (less sensitive to other processes on a
    shared machine) and the last output."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    assert out is not None
    return statistics.median(walls), statistics.median(cpus), out


def workload(name, spec, shape, classes, n_clients, args) -> None:
    torch.manual_seed(0)
    module = spec.build(shape, classes).to(args.device)
    model = FlatModel.of(module)
    data, test_x, test_y = stand_in(n_clients, args.samples, shape, classes, seed=1)
    data = data.to(args.device)
    test_x, test_y = test_x.to(args.device), test_y.to(args.device)
    cfg = LocalTrainingConfig(batch_size=16, learning_rate=0.05)
    params = model.initial_params()
    ids = list(range(n_clients))

    def vec() -> torch.Tensor:
        return train_vectorized(model, params, data, ids, cfg, 0, 0)

    def seq() -> torch.Tensor:
        return train_sequential(model, params, data, ids, cfg, 0, 0)

    vec()  # warm-up (torch.func tracing, allocator)
    seq()
    t_vec, c_vec, d_vec = timed(vec, args.repeats)
    t_seq, c_seq, d_seq = timed(seq, args.repeats)
    steps = -(-args.samples // cfg.batch_size)
    estimate = n_clients * bytes_per_client(model, shape, steps, cfg, args.device)
    acc = []
    for round_index in range(args.rounds):  # FedAvg with server learning rate 1
        delta = train_vectorized(model, params, data, ids, cfg, 0, round_index).mean(0)
        params = params + delta
        acc.append(model.evaluate(params, test_x, test_y)[0])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(f"{name}: {model.layout.dim:,} parameters, {n_clients} clients × {args.samples} samples")
    print(
        f"  s/round local training: vectorized {t_vec:.3f}, sequential {t_seq:.3f} "
        f"(median of {args.repeats}); ratio sequential/vectorized {t_seq / t_vec:.2f}×"
    )
    print(
        f"  CPU s/round: vectorized {c_vec:.3f}, sequential {c_seq:.3f}; ratio {c_seq / c_vec:.2f}×"
    )
    print(f"  max |vectorized − sequential| update: {float((d_vec - d_seq).abs().max()):.2e}")
    print(
        f"  vectorized peak estimate {estimate / 2**20:.0f} MiB; process peak RSS {peak_rss:.0f} MiB"
    )
    print(
        f"  test accuracy after {args.rounds} rounds: {acc[-1]:.3f} (chance {1 / classes:.3f}; "
        "synthetic stand-in, one seed)\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=20, help="samples per client")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["femnist", "cifar10"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}\n")
    if args.only in (None, "femnist"):
        workload("FEMNIST-format / LeNet-5", LeNet5(), (1, 28, 28), 62, 100, args)
    if args.only in (None, "cifar10"):
        workload("CIFAR-10-format / ResNet-8-GN", ResNet8GN(), (3, 32, 32), 10, 50, args)


if __name__ == "__main__":
    main()
