"""Language-model track (issue 19): the base model's quality, adapter-training speed, and the
papers' claims — each figure next to its baseline and its spread.

1. Base model: bits per character on the held-out public text (every 10th pydoc topic, never
   trained on) of the GPT pre-trained on the public corpus (``--pretrain-seeds`` seeds; the
   target is ≤ 2.5), next to two baselines on the same text: a byte-unigram model fitted on the
   pre-training text (what a model without context achieves) and the uniform 8 bits per byte.
2. Speed: tokens per second of one round of LoRA fine-tuning (the bundled messages, 10 clients),
   fedguard's vectorized trainer against the sequential reference (``nn.Module`` + SGD, client
   after client), interleaved trials in this process, median (min–max) and the ratio; and the
   CPU time of one DP-SGD clipped sum of the GPT by ghost norms against per-sample gradients.
3. The papers' claims: FFA-LoRA's test perplexity against LoRA's under DP-SGD at equal ε (3
   seeds), the size of FedAvg-on-LoRA's product-of-averages mismatch after one round, exposure
   against repetitions and DP, extraction against rounds and public data, FedRand's membership
   inference against LoRA's (3c–3e, in ``lm_claims.py``), and :func:`papers_claims`, one verdict
   line per claim.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_language.py [--trials 5]
        [--pretrain-steps 1500] [--pretrain-seeds 0 1 2] [--seeds 0 1 2]
        [--only base speed ghost ffa mismatch memorization public fedrand claims]
        [--mia-seeds 0 1 … 9]

The first call pre-trains and caches the base model of each seed (minutes on one core); later
calls read the cache (``$FEDGUARD_DATA`` or ``~/.cache/fedguard/data/models``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _spread(xs: list[float], fmt: str = ".4g") -> str:
    return f"{statistics.median(xs):{fmt}} (min {min(xs):{fmt}}, max {max(xs):{fmt}}, n={len(xs)})"


def unigram_bits_per_character(train: str, test: str) -> float:
    """Bits per character of a byte-unigram model (add-one smoothing) fitted on ``train``."""
    counts = np.bincount(np.frombuffer(train.encode(), np.uint8), minlength=256) + 1.0
    log2p = np.log2(counts / counts.sum())
    data = np.frombuffer(test.encode(), np.uint8)
    characters = int(np.sum((data & 0xC0) != 0x80))
    return float(-log2p[data].sum() / characters)


def bench_base(steps: int, seeds: list[int]) -> dict[str, Any]:
    from fedguard.text.corpus import public_text
    from fedguard.text.pretrain import PretrainConfig, base_model, bits_per_character

    heldout = public_text("heldout")
    print(f"\n1. base model: GPT 2×128, 4 heads, context 64, {steps} pre-training steps")
    values = []
    for seed in seeds:
        cfg = PretrainConfig(2, 4, 128, 64, steps, seed=seed)
        started = time.perf_counter()
        module = base_model(cfg)
        took = time.perf_counter() - started
        bpc = bits_per_character(module, heldout, cfg.context)
        values.append(bpc)
        print(f"   seed {seed}: {bpc:.3f} bits/char on held-out public text ({took:.0f} s)")
    unigram = unigram_bits_per_character(public_text("pretrain"), heldout)
    verdict = "meets" if max(values) <= 2.5 else "MISSES"
    print(
        f"   bits/char (held-out, {len(heldout):,} chars): {_spread(values, '.3f')}; "
        f"baselines: byte unigram {unigram:.3f}, uniform 8.000; {verdict} the ≤ 2.5 target "
        "on every seed"
        if verdict == "meets"
        else f"   bits/char: {_spread(values, '.3f')}; baselines: byte unigram {unigram:.3f}, "
        f"uniform 8.000; {verdict} the ≤ 2.5 target on at least one seed"
    )
    return {"bits_per_char": values, "unigram": unigram}


def _lora_setup(pretrain_steps: int) -> tuple[Any, Any, Any, list[int], Any]:
    from fedguard.config import parse_spec
    from fedguard.launch import build_simulation

    spec = parse_spec(
        {
            "name": "bench-language",
            "rounds": 1,
            "data": {
                "dataset": {"name": "text", "window": 32, "chars_per_author": 2000},
                "partition": "natural",
                "test_fraction": 0.1,
            },
            "model": {
                "name": "gpt",
                "pretrain_steps": pretrain_steps,
                "adapter": "lora",
                "lora_rank": 4,
            },
            "clients": {"n_clients": 10},
            "training": {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.05},
        }
    )
    sim = build_simulation(spec)
    params = sim.initial_state().params
    return sim, sim.model, params, list(range(10)), sim.local


def bench_speed(trials: int, pretrain_steps: int) -> dict[str, Any]:
    from fedguard.core.local_training import train_sequential, train_vectorized

    sim, model, params, ids, cfg = _lora_setup(pretrain_steps)
    counts = sim.clients.counts[ids].tolist()
    window = sim.clients.features.shape[2]
    tokens = sum(c * cfg.local_epochs for c in counts) * window  # every sample once per epoch
    trainers: dict[str, Callable[[], torch.Tensor]] = {
        "vectorized": lambda: train_vectorized(model, params, sim.clients, ids, cfg, 0, 0),
        # the vectorized trainer's generic path (vmap(grad)), the adapted GPT's path before
        # the one-pass adapter gradients (fedguard.core.adapter_gradients)
        "vmap": lambda: train_vectorized(model, params, sim.clients, ids, cfg, 0, 0, engine="vmap"),
        "sequential": lambda: train_sequential(model, params, sim.clients, ids, cfg, 0, 0),
    }
    seconds: dict[str, list[float]] = {k: [] for k in trainers}
    cpu: dict[str, list[float]] = {k: [] for k in trainers}
    outputs = {k: f() for k, f in trainers.items()}  # warm-up (and the equivalence check)
    gap = float((outputs["vectorized"] - outputs["sequential"]).abs().max())
    scale = float(outputs["sequential"].abs().max())
    for _ in range(trials):
        for name, run in trainers.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    rates = {k: [tokens / s for s in v] for k, v in cpu.items()}
    wall = {k: [tokens / s for s in v] for k, v in seconds.items()}

    def ratio_of(a: str, b: str, of: dict[str, list[float]]) -> list[float]:
        return [x / y for x, y in zip(of[a], of[b], strict=True)]

    ratio = ratio_of("vectorized", "sequential", rates)
    d = params.numel()
    print(
        f"\n2. speed: one round of LoRA (r=4 on query, value: {d:,} trained parameters), "
        f"10 clients, {tokens:,} tokens, batch 8, one thread, {trials} interleaved trials; "
        "tokens per CPU second (wall-clock in brackets)"
    )
    for name in trainers:
        print(
            f"   {name:>10}: {_spread(rates[name], '.0f')} tokens/s "
            f"[wall {_spread(wall[name], '.0f')}]"
        )
    print(
        f"   vectorized / sequential: {_spread(ratio, '.2f')}× "
        f"[wall {_spread(ratio_of('vectorized', 'sequential', wall), '.2f')}×]; "
        f"vmap path / sequential: {_spread(ratio_of('vmap', 'sequential', rates), '.2f')}×; "
        f"vectorized / vmap path: {_spread(ratio_of('vectorized', 'vmap', rates), '.2f')}× "
        f"(largest |Δ| of the vectorized and sequential deltas: {gap:.1e}, of entries up to "
        f"{scale:.1e})"
    )
    bound = _step_bound(sim, model, params, 2 * trials + 1)
    print(
        "   one step of the 10 clients (8 windows each), CPU ms, median of "
        f"{2 * trials + 1} interleaved trials: "
        + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f}" for k, v in bound.items())
        + " — 'one model' runs a single adapter copy on all the step's tokens: the bound of "
        "batching clients"
    )
    return {"tokens_per_second": rates, "ratio": ratio, "step_seconds": bound}


def _step_bound(sim: Any, model: Any, params: torch.Tensor, trials: int) -> dict[str, list[float]]:
    """CPU seconds of one step's gradients: the adapter path, the vmap path, one model on all
    the clients' tokens at once (what batching clients cannot beat) and client by client."""
    from fedguard.core.adapter_gradients import adapter_gradient_fn
    from fedguard.core.local_training import _gradient_fn
    from fedguard.models.losses import mean_cross_entropy

    module = model.module
    x, y = sim.clients.features[:, :8], sim.clients.labels[:, :8]  # (10, 8, L)
    k, batch = x.shape[0], x.shape[1]
    stacked = params.expand(k, -1).clone()
    weight = torch.full((k, batch), 1.0 / batch)
    adapter, vmapped = adapter_gradient_fn(model), _gradient_fn(model, None)
    assert adapter is not None

    def one_model() -> None:
        module.zero_grad()
        flat_x, flat_y = x.reshape(k * batch, -1), y.reshape(k * batch, -1)
        mean_cross_entropy(module(flat_x), flat_y).backward()

    def client_by_client() -> None:
        for c in range(k):
            module.zero_grad()
            mean_cross_entropy(module(x[c]), y[c]).backward()

    paths: dict[str, Callable[[], object]] = {
        "adapter path": lambda: adapter([stacked], x, y, weight, []),
        "vmap path": lambda: vmapped([stacked], x, y, weight, []),
        "one model": one_model,
        "sequential": client_by_client,
    }
    for f in paths.values():
        f()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(trials):
        for name, f in paths.items():
            started = time.process_time()
            f()
            times[name].append(time.process_time() - started)
    module.zero_grad()
    return times


def bench_ghost(trials: int) -> dict[str, Any]:
    """CPU seconds of one DP-SGD clipped gradient sum of the default GPT (batch 16 × 32 tokens):
    ghost clipping (fedguard.core.ghost_norms_text) against per-sample gradients by vmap."""
    print(f"\n2b. DP-SGD clipped sum of the GPT, batch 16 × 32 tokens, CPU s ({trials} trials)")
    out: dict[str, Any] = {}
    for adapter in ("none", "lora"):
        times = _clipping_times(adapter, trials)
        ratio = [v / g for v, g in zip(times["vmap"], times["ghost"], strict=True)]
        label = "full fine-tuning" if adapter == "none" else "LoRA r=4"
        print(
            f"   {label:>16}: ghost {_spread(times['ghost'], '.3f')}, vmap "
            f"{_spread(times['vmap'], '.3f')}; vmap / ghost {_spread(ratio, '.2f')}"
        )
        out[adapter] = {**times, "ratio": ratio}
    return out


def _clipping_times(adapter: str, trials: int) -> dict[str, list[float]]:
    from fedguard.core.ghost_norms_text import ghost_clipped_gradient_sum
    from fedguard.core.local_training import clipped_gradient_sum
    from fedguard.models.flat import FlatModel
    from fedguard.models.gpt import GPT

    spec = GPT(adapter=adapter)
    module = spec.build((32,), 259)
    torch.manual_seed(0)
    spec.initialize(module)
    model = FlatModel.of(module)
    p = model.initial_params()
    tokens = torch.randint(0, 256, (16, 33), generator=torch.Generator().manual_seed(0))
    x, y, mask = tokens[:, :-1], tokens[:, 1:], torch.ones(16)
    paths: dict[str, Callable[[], torch.Tensor]] = {
        "ghost": lambda: ghost_clipped_gradient_sum(model, p, x, y, mask, 1.0),
        "vmap": lambda: clipped_gradient_sum(model, p[None], x[None], y[None], mask[None], 1.0),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    for f in paths.values():
        f()  # warm-up
    for _ in range(trials):
        for name, f in paths.items():
            started = time.process_time()
            f()
            times[name].append(time.process_time() - started)
    return times


def _lm_spec(adapter: str, seed: int, pretrain_steps: int, defense: dict[str, Any]) -> Any:
    from fedguard.config import parse_spec

    return parse_spec(
        {
            "name": f"bench-language-{adapter}",
            "seed": seed,
            "rounds": 5,
            "data": {
                "dataset": {"name": "text", "window": 32, "chars_per_author": 2000},
                "partition": "natural",
                "test_fraction": 0.1,
            },
            "model": {
                "name": "gpt",
                "pretrain_steps": pretrain_steps,
                "adapter": adapter,
                "lora_rank": 4,
            },
            "clients": {"n_clients": 10, "weighting": "uniform"},
            "training": {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.5},
            "defense": defense,
        }
    )


def bench_ffa_vs_lora(seeds: list[int], pretrain_steps: int) -> dict[str, Any]:
    """FFA-LoRA's claim (Sun et al. 2024): under DP-SGD at equal ε, freezing A gives a better
    model than LoRA. Same noise multiplier, clip, sampling and steps for both, so ε is equal;
    test perplexity per byte token after 5 rounds, ``len(seeds)`` seeds each."""
    from fedguard.launch import execute
    from fedguard.privacy.budget import epsilon_of_ledger

    dp = {"client_transforms": [{"name": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0}]}
    out: dict[str, Any] = {}
    print(
        f"\n3a. FFA-LoRA vs LoRA under record-level DP-SGD (z = 1.0, C = 1.0, equal ε), "
        f"5 rounds, 10 clients, r = 4, seeds {seeds}"
    )
    base: list[float] = []
    for adapter in ("lora", "ffa_lora"):
        for label, defense in (("no DP", {}), ("DP-SGD", dp)):
            losses, epsilons = [], []
            for seed in seeds:
                spec = _lm_spec(adapter, seed, pretrain_steps, defense)
                result = execute(spec)
                losses.append(float(result.records[-1]["test_loss"]))
                epsilons.append(float(epsilon_of_ledger(result.ledger, spec.privacy.delta)))
                if len(base) < len(seeds):  # B = 0: the base model on this seed's test split
                    sim = result.simulation
                    _, loss = sim.model.evaluate(sim.initial_state().params, *sim.test)
                    base.append(math.exp(loss))
            ppl = [math.exp(v) for v in losses]
            out[f"{adapter}/{label}"] = {"perplexity": ppl, "epsilon": epsilons}
            eps_text = f", ε = {_spread(epsilons, '.3g')}" if label == "DP-SGD" else ""
            print(f"   {adapter:>8} {label:>6}: test perplexity {_spread(ppl, '.3f')}{eps_text}")
    print(f"   baseline, the base model before fine-tuning: {_spread(base, '.3f')}")
    out["base"] = base
    return out


def bench_averaging_mismatch(seeds: list[int], pretrain_steps: int) -> dict[str, Any]:
    """FedAvg on LoRA averages A and B separately: relative size of what the product of averages
    misses, ‖mean(BᵢAᵢ) − B̄Ā‖ / ‖mean(BᵢAᵢ) − B₀A₀‖ (Frobenius, summed over adapted layers),
    after one round of 10 clients (lr 0.5, 1 local epoch) from the base model."""
    from fedguard.core.local_training import train_vectorized
    from fedguard.models.lora import adapter_pairs, averaging_mismatch

    gaps = []
    for seed in seeds:
        sim = _lm_spec_sim("lora", seed, pretrain_steps)
        p0 = sim.initial_state().params
        ids = list(range(sim.spec.clients.n_clients))
        deltas = train_vectorized(sim.model, p0, sim.clients, ids, sim.local, seed, 0)
        blocks = sim.model.layout.unflatten(p0 + deltas)  # (n, *shape) per parameter
        start = sim.model.layout.unflatten(p0)
        missed, moved = 0.0, 0.0
        for _, a_name, b_name in adapter_pairs(sim.model.layout.names):
            assert a_name is not None
            a, b = blocks[a_name], blocks[b_name]
            missed += float(averaging_mismatch(a, b).pow(2).sum())
            target = (b @ a).mean(dim=0) - start[b_name] @ start[a_name]
            moved += float(target.pow(2).sum())
        gaps.append((missed / moved) ** 0.5)
    print(
        f"\n3b. FedAvg on LoRA, one round of 10 clients: the product of averages misses "
        f"{_spread(gaps, '.3f')} of the average client update (relative Frobenius norm; "
        f"0 for FFA-LoRA by construction), seeds {seeds}"
    )
    return {"gap": gaps}


def _lm_spec_sim(adapter: str, seed: int, pretrain_steps: int) -> Any:
    from fedguard.launch import build_simulation

    return build_simulation(_lm_spec(adapter, seed, pretrain_steps, {}))


def papers_claims(results: dict[str, Any]) -> None:
    """The papers' claims, measured. Each attack or defense of the track appends its own
    section here (call it with what it measured); this module prints what the base measures."""
    print("\n3. the papers' claims")
    speed = results.get("speed")
    if speed is not None:
        ratio = speed["ratio"]
        verdict = (
            "faster in every trial"
            if min(ratio) > 1
            else ("slower in every trial" if max(ratio) < 1 else "no clear difference")
        )
        print(
            f"   vectorized adapter training: {_spread(ratio, '.2f')}× the sequential "
            f"reference's tokens/s — {verdict}"
        )
    ffa = results.get("ffa")
    if ffa is not None:
        lora_runs, frozen_runs = (
            ffa["lora/DP-SGD"]["perplexity"],
            ffa["ffa_lora/DP-SGD"]["perplexity"],
        )
        wins = sum(f < lo for f, lo in zip(frozen_runs, lora_runs, strict=True))
        n = len(lora_runs)
        verdict = (
            "holds on every seed"
            if wins == n
            else ("does not hold on any seed" if wins == 0 else f"holds on {wins} of {n} seeds")
        )
        print(
            f"   FFA-LoRA vs LoRA at equal ε (Sun et al. 2024; lower FFA-LoRA perplexity is the "
            f"claim): median {statistics.median(frozen_runs):.3f} vs "
            f"{statistics.median(lora_runs):.3f} — {verdict} (same seed, same data, same ε)"
        )
    for line in __import__("lm_claims").claims_lines(results):  # 3c–3e (benchmarks/lm_claims.py)
        print(f"   {line}")
    base = results.get("base")
    if base is not None:
        gain = base["unigram"] - statistics.median(base["bits_per_char"])
        print(
            f"   the pre-trained base model models language: {gain:.2f} bits/char below the "
            "byte-unigram baseline (median over seeds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--only",
        nargs="+",
        default=["base", "speed", "ffa", "mismatch", "memorization", "public", "fedrand", "claims"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # 3e's cells take ≈ 3 CPU-s each: more seeds than the others, for the AUCs' spread
    parser.add_argument("--mia-seeds", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    if "base" in args.only:
        results["base"] = bench_base(args.pretrain_steps, args.pretrain_seeds)
    if "speed" in args.only:
        results["speed"] = bench_speed(args.trials, args.pretrain_steps)
    if "ghost" in args.only:
        results["ghost"] = bench_ghost(args.trials)
    if "ffa" in args.only:
        results["ffa"] = bench_ffa_vs_lora(args.seeds, args.pretrain_steps)
    if "mismatch" in args.only:
        results["mismatch"] = bench_averaging_mismatch(args.seeds, args.pretrain_steps)
    claims = __import__("lm_claims")  # 3c–3e: memorization and membership (lm_claims.py)
    if "memorization" in args.only:
        results["memorization"] = claims.bench_memorization(args.seeds)
    if "public" in args.only:
        no_dp = results.get("memorization", {}).get("runs", {}).get("no DP")
        results["public"] = claims.bench_public_data(args.seeds, no_dp=no_dp)
    if "fedrand" in args.only:
        results["fedrand"] = claims.bench_fedrand_mia(args.mia_seeds)
    if "claims" in args.only:
        papers_claims(results)
    if "dager" in args.only:  # issue 20: DAGER against the adapters' rank (--only dager)
        __import__("bench_text_attacks").bench_dager_rank(args.seeds)


if __name__ == "__main__":
    main()
