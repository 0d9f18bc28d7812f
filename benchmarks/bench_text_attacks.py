"""DAGER against the rank of the adapters (issue 20): token recovery from one FedSGD round of a
byte-level GPT (d_model 64, 2 layers, 16-token windows) for full fine-tuning, LoRA and FFA-LoRA at
ranks 4–64, over seeds, with each client's number of tokens beside it.

What the structure allows (see :mod:`attacks.text.dager`): full fine-tuning exposes the span of
every input (bound: tokens < d_model − 1 = 63, LayerNorm's hyperplane); FFA-LoRA (A frozen)
exposes ``span{A x}`` through B's gradient (bound: tokens < r); LoRA's A has zero gradient in
round 0 (B = 0), so round 0 is FFA-LoRA's case, and from round 1 on its A's gradient exposes an
r-dimensional part of the span (bound: tokens < r). The baseline is full fine-tuning.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_text_attacks.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch


def _run(adapter: str, rank: int, seed: int, at_round: int) -> list[tuple[int, float, str]]:
    """``(tokens, token recovery, status)`` of every client of one run."""
    from fedguard.attacks.text.dager_attack import Dager
    from fedguard.config import parse_spec
    from fedguard.launch import build_simulation

    spec = {
        "rounds": at_round + 1,
        "seed": seed,
        "data": {
            "dataset": {
                "name": "text",
                "n_authors": 3,
                "chars_per_author": 40,
                "window": 16,
                "secret_formats": {"pin": "my PIN is {d4}"},
                "secrets_per_author": 1,
                "repetitions": [1],
            },
            "partition": "natural",
            "test_fraction": 0.1,
        },
        "model": {
            "name": "gpt",
            "d_model": 64,
            "n_layer": 2,
            "n_head": 2,
            "context": 16,
            "adapter": adapter,
            "lora_rank": rank,
            "lora_targets": ["query", "key", "value"],
        },
        "clients": {"n_clients": 3},
        "training": {"algorithm": "fedsgd", "learning_rate": 0.1},
        "attack": {"privacy_attacks": [{"name": "dager", "at_round": at_round, "max_clients": 3}]},
    }
    sim = build_simulation(parse_spec(spec))
    state = sim.initial_state()
    for _ in range(at_round + 1):
        state, _ = sim.run_round(state)
    truth = sim.truth()
    out = []
    for _, attack, output in sim.privacy_outputs:
        if output is None or not isinstance(attack, Dager):
            continue
        for cid, result in output.results.items():
            originals = [tuple(r) for r in truth.private_batches[cid][0].long().tolist()]
            found = set(result.sequences)
            tokens = sum(len(o) for o in originals)
            recovered = sum(len(o) for o in originals if o in found) / tokens
            out.append((tokens, recovered, result.status))
    return out


def bench_dager_rank(
    seeds: list[int], ranks: tuple[int, ...] = (4, 8, 16, 32, 64)
) -> dict[str, Any]:
    torch.set_num_threads(1)
    cases = [("none", 0, 0)] + [
        (adapter, r, at)
        for adapter, at in (("ffa_lora", 0), ("lora", 0), ("lora", 1))
        for r in ranks
    ]
    print("DAGER token recovery after one FedSGD round, per client (3 clients × seeds", seeds, ")")
    print(
        f"{'adapter':<10}{'rank':>5}{'round':>6}  {'recovered (mean ± sd)':<24}{'failed':>8}  tokens/client"
    )
    results: dict[str, Any] = {}
    for adapter, rank, at in cases:
        rows = [row for seed in seeds for row in _run(adapter, rank or 4, seed, at)]
        values = [v for _, v, _ in rows]
        failed = sum(s == "failed" for _, _, s in rows)
        tokens = sorted(t for t, _, _ in rows)
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        name = "full" if adapter == "none" else adapter
        print(
            f"{name:<10}{rank or '-':>5}{at:>6}  {statistics.mean(values):.3f} ± {sd:.3f}"
            f"{'':<9}{failed:>4}/{len(rows):<3}  {tokens[0]}–{tokens[-1]}"
        )
        results[f"{name}/r{rank}/round{at}"] = {
            "recovered": values,
            "tokens": tokens,
            "failed": failed,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bench_dager_rank(parser.parse_args().seeds)


if __name__ == "__main__":
    main()
