"""Cost of secure aggregation (Bonawitz et al. 2017; SecAgg+, Bell et al. 2020), measured.

Prints three tables, all against baselines measured in this process:

1. PRG throughput (mask expansion) against the raw ChaCha20 / AES-256-CTR speed of this machine.
2. Shamir split / combine for n = 1000 holders, t = 501, both fields.
3. Per-client and server seconds and bytes sent per client for n ∈ {10, 100, 500},
   d ∈ {10^3, 10^5, 10^6}, dropout 0 % / 10 %, complete graph vs SecAgg+ graph, with the ratio
   to plaintext (weighted) summation of the same updates. Cells whose predicted run time is over
   ``--max-cell`` seconds (default 60), whose memory is over ``--max-memory-gb``, or that no longer
   fit the total ``--budget`` are skipped with the reason printed. Cheapest cells run first.

Usage: ``PYTHONPATH=$PWD python benchmarks/bench_secagg.py [--budget 240] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedguard.defenses.secure_aggregation import crypto, prg, shamir
from fedguard.defenses.secure_aggregation.graph import default_degree
from fedguard.defenses.secure_aggregation.transport import SecAggPlusTransport, SecAggTransport
from fedguard.types import RoundContext


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def prg_table() -> dict[str, float]:
    n_bytes = 64 << 20
    zeros = bytearray(n_bytes)
    buf = bytearray(n_bytes + 64)
    key = os.urandom(32)
    raw = {
        "chacha20": lambda: Cipher(algorithms.ChaCha20(key, bytes(16)), None),
        "aes_ctr": lambda: Cipher(algorithms.AES(key), modes.CTR(bytes(16))),
    }
    print("\n## PRG: mask expansion vs. the raw cipher (GB/s, 64 MiB)\n")
    print(f"{'algorithm':<10} {'raw cipher':>11} {'expand()':>9} {'accumulate':>11} {'ratio':>6}")
    rates: dict[str, float] = {}
    n_words = n_bytes // 4
    for name, make in raw.items():
        t_raw = _best(lambda make=make: make().encryptor().update_into(zeros, buf))
        t_prg = _best(lambda name=name: prg.expand(key, n_words, np.dtype(np.uint32), name))
        acc = np.zeros(n_words, dtype=np.uint32)
        t_add = _best(lambda name=name, acc=acc: prg.accumulate(acc, key, +1, name), repeat=5)
        rates[name] = n_bytes / t_add  # bytes of mask per second, as the protocol uses it
        print(
            f"{name:<10} {n_bytes / t_raw / 1e9:>11.2f} {n_bytes / t_prg / 1e9:>9.2f} "
            f"{n_bytes / t_add / 1e9:>11.2f} {t_raw / t_add:>6.2f}"
        )
    print(
        "(expand(): fresh array per mask; accumulate(): acc ± PRG in a reused buffer, what the "
        "protocol runs;\n ratio = raw cipher time / accumulate time, 1.00 = cipher speed)"
    )
    return rates


def shamir_table() -> None:
    print("\n## Shamir t-of-n, n = 1000 holders, t = 501 (seconds, best of 3)\n")
    print(f"{'field':<10} {'secret':<16} {'split':>8} {'combine':>8}")
    xs = np.arange(1, 1001, dtype=np.int64)
    pick = np.random.default_rng(0).choice(1000, 501, replace=False)
    for prime, label in ((shamir.MERSENNE_31, "2^31 - 1"), (shamir.MERSENNE_127, "2^127 - 1")):
        for n_keys in (1, 2):
            sec = np.concatenate([shamir.secret_to_field(os.urandom(32), prime)] * n_keys)
            shares = shamir.split(sec, xs, 501, prime)
            t_split = _best(lambda sec=sec, prime=prime: shamir.split(sec, xs, 501, prime))
            t_comb = _best(lambda s=shares, prime=prime: shamir.combine(s[pick], xs[pick], prime))
            what = f"{n_keys} x 32 B ({len(sec)} el)"
            print(f"{label:<10} {what:<16} {t_split:>8.3f} {t_comb:>8.3f}")


@dataclass(frozen=True)
class Cell:
    n: int
    d: int
    dropout: float
    graph: str  # "full" | "plus"

    @property
    def degree(self) -> int:
        return self.n - 1 if self.graph == "full" else default_degree(self.n)


@dataclass(frozen=True)
class Calibration:
    mask_bytes_per_s: float
    exchange_s: float  # one X25519 agreement + HKDF
    encode_s_per_coord: float


def calibrate(mask_rate: float) -> Calibration:
    a = crypto.new_agreement_key()
    peer = crypto.public_bytes(crypto.new_agreement_key())
    t_x = _best(lambda: [crypto.agree(a, peer, b"x", 0) for _ in range(200)]) / 200
    upd = torch.randn(200_000)
    t_enc = _best(lambda: upd.double().clamp(-1, 1).mul(2.0**20).floor(), repeat=3) * 3
    return Calibration(mask_rate, t_x, t_enc / 200_000)


def predict(cell: Cell, cal: Calibration) -> tuple[float, float]:
    """(seconds, GiB) predicted for one cell."""
    n, d, k = cell.n, cell.d, cell.degree
    words = n * (k + 1) * d + n * d + cell.dropout * n * k * d  # clients + server unmasking
    t_mask = 4 * words / cal.mask_bytes_per_s
    t_keys = 2 * n * k * cal.exchange_s + 4e-6 * n * k  # X25519 + HKDF, AEAD
    t = math.floor(0.5 * (k + 1)) + 1
    t_shamir = n * t * (k + 1) * 18 * 4e-9
    t_enc = n * d * cal.encode_s_per_coord
    gib = n * d * (4 + 4) / 2**30 + 8 * d * 6 / 2**30  # updates + ring inputs + work vectors
    return t_mask + t_keys + t_shamir + t_enc, gib


def run_cell(cell: Cell, repeat: int = 1) -> dict[str, float]:
    g = torch.Generator().manual_seed(cell.n * 7 + cell.d)
    updates = torch.randn(cell.n, cell.d, generator=g) * 0.05  # (n, d)
    weights = torch.randint(1, 100, (cell.n,), generator=g).to(torch.float64)  # (n,)
    ctx = RoundContext(
        round=1,
        seed=0,
        global_params=torch.zeros(cell.d),
        sampled_ids=tuple(range(cell.n)),
        n_clients=cell.n,
    )
    transport: SecAggTransport
    if cell.graph == "full":
        transport = SecAggTransport(dropout_rate=cell.dropout)
    else:
        transport = SecAggPlusTransport(dropout_rate=cell.dropout)
    w32 = weights.to(updates.dtype)
    t_plain = _best(lambda: w32 @ updates, repeat=3)  # (d,) weighted sum in the clear
    runs = []
    for _ in range(repeat):  # best of `repeat`: the machine is shared
        t0 = time.perf_counter()
        out = transport(updates, weights, ctx)
        runs.append((time.perf_counter() - t0, out.info))
    wall, info = min(runs, key=lambda r: r[0])
    return {
        "k": float(info["neighbourhood_size"] - 1),
        "t": float(info["threshold"]),
        "drop": float(info["dropouts"]),
        "client_s": float(info["client_seconds_mean"]),
        "server_s": float(info["server_seconds"]),
        "wall_s": wall,
        "plain_s": t_plain,
        "sent_B": float(info["bytes_sent_per_client"]),
        "recv_B": float(info["bytes_received_per_client"]),
    }


def protocol_table(args: argparse.Namespace, cal: Calibration) -> None:
    ns = (10, 100) if args.quick else (10, 100, 500)
    ds = (1_000, 100_000) if args.quick else (1_000, 100_000, 1_000_000)
    cells = [
        Cell(n, d, p, gr) for n in ns for d in ds for p in (0.0, 0.1) for gr in ("full", "plus")
    ]
    order = sorted(cells, key=lambda c: predict(c, cal)[0])
    run_cell(Cell(4, 10, 0.0, "full"))  # warm-up (lazy initialization), not reported
    results: dict[Cell, dict[str, float] | str] = {}
    spent = 0.0
    for cell in order:
        est, gib = predict(cell, cal)
        if est > args.max_cell:
            keystream = 4 * cell.n * (cell.degree + 1) * cell.d / 1e9
            agreements = 2 * cell.n * cell.degree / 1e3
            results[cell] = (
                f"skipped: predicted {est:.0f} s > {args.max_cell:.0f} s "
                f"({keystream:.1f} GB of client keystream, {agreements:.0f}k X25519 agreements)"
            )
        elif gib > args.max_memory_gb:
            results[cell] = f"skipped: needs ~{gib:.1f} GiB > --max-memory-gb {args.max_memory_gb}"
        elif spent + est * (3 if est < 1.0 else 1) > args.budget:
            results[cell] = f"skipped: predicted {est:.0f} s does not fit the remaining budget"
        else:
            t0 = time.perf_counter()
            results[cell] = run_cell(cell, repeat=3 if est < 1.0 else 1)
            spent += time.perf_counter() - t0
    print("\n## Protocol cost per round (seconds; bytes per client; ratio to plaintext sum)\n")
    head = (
        f"{'n':>4} {'d':>8} {'drop':>5} {'graph':<5} {'k':>4} {'t':>4} {'client s':>9} "
        f"{'server s':>9} {'wall s':>8} {'sent/client':>12} {'x plain':>8} "
        f"{'server/plain':>13}"
    )
    print(head)
    print("-" * len(head))
    for cell in cells:
        r = results[cell]
        lead = f"{cell.n:>4} {cell.d:>8} {cell.dropout:>5.0%} {cell.graph:<5}"
        if isinstance(r, str):
            print(f"{lead} {r}")
            continue
        print(
            f"{lead} {r['k']:>4.0f} {r['t']:>4.0f} {r['client_s']:>9.4f} {r['server_s']:>9.4f} "
            f"{r['wall_s']:>8.2f} {r['sent_B']:>12.0f} {r['sent_B'] / (4 * cell.d):>8.2f} "
            f"{r['server_s'] / r['plain_s']:>13.0f}"
        )
    print(
        "\nclient s: mean compute per client (encode + all protocol steps); server s: server "
        "compute incl. unmasking and decoding; wall s: whole simulated round in one process;\n"
        "sent/client: mean over clients whose input is in the sum; x plain: sent/client / 4d "
        "(a float32 update in the clear);\nserver/plain: server seconds / plaintext weighted sum "
        "(w @ updates) of the same (n, d) updates."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="total seconds for cells")
    parser.add_argument("--max-cell", type=float, default=60.0, help="skip cells predicted longer")
    parser.add_argument("--max-memory-gb", type=float, default=2.0, help="skip bigger cells")
    parser.add_argument("--quick", action="store_true", help="n in {10, 100}, d in {1e3, 1e5}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates = prg_table()
    shamir_table()
    cal = calibrate(rates["chacha20"])
    print(
        f"\ncalibration: X25519+HKDF {cal.exchange_s * 1e6:.1f} us, mask expand+add "
        f"{cal.mask_bytes_per_s / 1e9:.2f} GB/s"
    )
    protocol_table(args, cal)


if __name__ == "__main__":
    main()
