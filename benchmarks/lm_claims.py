"""The language-model papers' memorization claims, measured (issue 19; ``bench_language.py``
sections 3c–3e). Each figure is printed with its seeds, its spread and its baseline, whichever
way it comes out.

3c. **Exposure rises with repetitions and falls under DP** (Carlini et al. 2019): the exposure of
    planted PINs (``"my PIN is {d4}"``, 10⁴ candidates, exact enumeration) on the global model
    after federated fine-tuning, by how often each was planted (1, 4, 16), without DP and under
    record-level DP-SGD at the stated ε — next to perplexity, and to the exposure of a secret the
    model never saw (log₂ e ≈ 1.44 bits in expectation: its rank is uniform).
3d. **Extraction against rounds and against the public data** (FedDIT/FedDCA's question): how
    many planted PINs the server extracts verbatim by prompting ``"my PIN is "`` (greedy, and
    greedy or any of 16 top-40 samples), every round, from the global model (18 secrets) and
    from client 0's local model θ + Δ₀ that plain FedAvg shows the server (its 3 secrets); and
    at the last round against the public text the base model was pre-trained on (pre-training
    steps × 32 windows × 32 tokens; 0 = no pre-training, GPT-2's random initialisation).
3e. **FedRand's membership inference against LoRA's at comparable perplexity** (Park et al.
    2025): the ``sequence_membership`` × {``lora``, ``fedrand``} cells of
    ``configs/matrices/lora_privacy.yaml`` (client-level reference LiRA and loss AUC against
    client 0), run here per seed.

Workload of 3c/3d (CPU-sized: ≈ 8 CPU-s a run without DP, ≈ 20 with DP-SGD, one thread): the
bundled text, 6 authors × 600 characters, each author holding 3 PINs planted 1, 4 and 16 times
(32-byte windows, 10% test split), GPT 2 × 64 (context 32) pre-trained 600 steps on the public
corpus (2.93 bits/char), full fine-tuning of all 6 clients a round, 12 rounds of 2 local epochs,
batch 8, learning rate 0.3. The attacks observe what the server holds in a round: the global
model it broadcasts (after as many rounds of training; the last round's is after 11) and, in
plain FedAvg, each client's update.

References
----------
Carlini, Liu, Erlingsson, Kos, Song. "The Secret Sharer." USENIX Security 2019.
Carlini et al. "Extracting Training Data from Large Language Models." USENIX Security 2021.
Park et al. "FedRand: Enhancing Privacy in Federated Learning with Randomized LoRA Subparameter
Updates." 2025.
"""

from __future__ import annotations

import math
import statistics
import warnings
from pathlib import Path
from typing import Any

REPETITIONS = (1, 4, 16)
ROUNDS = 12
EARLY_ROUND = 2  # a second exposure measurement: the baseline at comparable perplexity
UNSEEN_EXPOSURE = math.log2(math.e)  # E[log2 N − log2 rank], rank uniform on 1..N, N → ∞
MATRIX = Path(__file__).resolve().parent.parent / "configs" / "matrices" / "lora_privacy.yaml"


def _spread(xs: list[float], fmt: str = ".2f") -> str:
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"


def _sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def memorization_spec(
    seed: int,
    *,
    pretrain_steps: int = 600,
    noise_multiplier: float | None = None,
    adapter: str = "none",
) -> Any:
    from fedguard.config import parse_spec

    extraction = {"name": "extraction", "every_round": True, "n_samples": 16, "top_k": 40}
    defense: dict[str, Any] = {}
    if noise_multiplier is not None:
        dp_sgd = {"name": "dp_sgd", "noise_multiplier": noise_multiplier, "clip_norm": 1.0}
        defense = {"client_transforms": [dp_sgd]}
    return parse_spec(
        {
            "name": "lm-claims",
            "seed": seed,
            "rounds": ROUNDS,
            "data": {
                "dataset": {
                    "name": "text",
                    "window": 32,
                    "n_authors": 6,
                    "chars_per_author": 600,
                    "secret_formats": {"pin": "my PIN is {d4}"},
                    "secrets_per_author": len(REPETITIONS),
                    "repetitions": list(REPETITIONS),
                },
                "partition": "natural",
                "test_fraction": 0.1,
            },
            "model": {
                "name": "gpt",
                "n_layer": 2,
                "n_head": 2,
                "d_model": 64,
                "context": 32,
                "pretrain_steps": pretrain_steps,
                "adapter": adapter,
                "lora_rank": 4,
                "lora_targets": ["query", "key", "value"],
            },
            "clients": {"n_clients": 6, "weighting": "uniform"},
            "training": {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.3},
            "defense": defense,
            "attack": {
                "privacy_attacks": [
                    {"name": "canary_exposure"},  # every PIN, exact (10⁴ candidates), last round
                    # and early, where plain training's perplexity is near DP-SGD's at the end
                    {"name": "canary_exposure", "at_round": EARLY_ROUND},
                    extraction,
                    {**extraction, "target": "client", "target_client": 0},
                ]
            },
        }
    )


def run_memorization(seed: int, **kwargs: Any) -> dict[str, Any]:
    """One run of the workload: exposure by planted repetitions (last round), extracted
    secrets per round (global and client 0; greedy and greedy-or-sampled), perplexity, ε."""
    from fedguard.attacks.text.canary_exposure import CanaryExposure
    from fedguard.attacks.text.extraction import Extraction
    from fedguard.launch import execute
    from fedguard.matrix.cell import privacy_epsilon

    spec = memorization_spec(seed, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = execute(spec)
    sim = result.simulation
    truth = sim.truth()
    planted = {s.text: s.repetitions for s in truth.secrets}
    exposure: dict[int, list[float]] = {r: [] for r in REPETITIONS}
    early: dict[int, list[float]] = {r: [] for r in REPETITIONS}
    extracted: dict[str, list[tuple[float, float]]] = {"global": [], "client": []}
    perplexity: dict[str, float] = {}

    def perplexity_of(params: Any) -> float:  # on the test windows
        return math.exp(sim.model.evaluate(params, *sim.test)[1])

    for _, attack, output in sim.privacy_outputs:
        if output is None:
            continue
        if isinstance(attack, CanaryExposure):
            into = early if attack.at_round == EARLY_ROUND else exposure
            # the model attacked: the one broadcast in that round (after as many rounds)
            key = "early" if attack.at_round == EARLY_ROUND else "last"
            perplexity[key] = perplexity_of(output.target.params)
            for row in attack.exposures(output, truth):
                into[planted[row["secret"]]].append(row["exposure"])
        elif isinstance(attack, Extraction):
            m = attack.metrics(output, truth)
            key = "client" if attack.target == "client" else "global"
            extracted[key].append((m["extracted_greedy"], m["extracted"]))
    eps = privacy_epsilon(spec, result.ledger)
    return {
        "exposure": {r: statistics.mean(v) for r, v in exposure.items()},
        "exposure_max": max(max(v) for v in exposure.values()),
        "early": {r: statistics.mean(v) for r, v in early.items()},
        "early_perplexity": perplexity["early"],
        "extracted": extracted,
        "perplexity": perplexity["last"],
        "base_perplexity": perplexity_of(sim.initial_state().params),  # before fine-tuning
        "epsilon": math.inf if eps is None else eps,
    }


def bench_memorization(
    seeds: list[int], noise_multipliers: tuple[float, ...] = (0.5, 1.0)
) -> dict[str, Any]:
    """3c and the rounds half of 3d (the no-DP runs)."""
    print(
        f"\n3c. exposure of planted PINs (bits, of log2 10⁴ = 13.29) on the global model of the "
        f"last round (after {ROUNDS - 1} rounds of full fine-tuning), by times planted; median "
        f"(min–max) over seeds {seeds}; perplexity of that model on the test windows; a "
        f"never-seen secret: {UNSEEN_EXPOSURE:.2f} expected"
    )
    settings: list[tuple[str, float | None, str]] = [("no DP", None, "none")]
    settings += [(f"DP-SGD z={z}", z, "none") for z in noise_multipliers]
    # the same recipe sending LoRA adapters (r = 4 on query, key, value): DP-SGD on adapters
    settings += [
        ("LoRA, no DP", None, "lora"),
        (f"LoRA DP z={noise_multipliers[-1]}", noise_multipliers[-1], "lora"),
    ]
    runs: dict[str, list[dict[str, Any]]] = {}
    header = "".join(f"{f'×{r}':>20}" for r in REPETITIONS)
    print(f"   {'':<14}{header}{'max':>8}{'perplexity':>22}{'ε (δ=1e-5)':>14}")
    for label, z, adapter in settings:
        runs[label] = [
            run_memorization(seed, noise_multiplier=z, adapter=adapter) for seed in seeds
        ]
        cells = "".join(
            f"{_spread([r['exposure'][rep] for r in runs[label]]):>20}" for rep in REPETITIONS
        )
        top = statistics.median(r["exposure_max"] for r in runs[label])
        eps = statistics.median(r["epsilon"] for r in runs[label])
        ppl = _spread([r["perplexity"] for r in runs[label]], ".2f")
        print(f"   {label:<14}{cells}{top:>8.2f}{ppl:>22}{eps:>14.3g}")
    plain = runs["no DP"]
    cells = "".join(f"{_spread([r['early'][rep] for r in plain]):>20}" for rep in REPETITIONS)
    ppl = _spread([r["early_perplexity"] for r in plain], ".2f")
    label = f"no DP, {EARLY_ROUND} round" + ("s" if EARLY_ROUND > 1 else "")
    print(f"   {label:<14}{cells}{'':>8}{ppl:>22}{'inf':>14}")
    base = _spread([r["base_perplexity"] for r in runs["no DP"]])
    print(f"   baseline: the base model before fine-tuning, perplexity {base} (test windows)")
    _print_rounds(runs["no DP"], seeds)
    return {"runs": runs}


def _print_rounds(runs: list[dict[str, Any]], seeds: list[int]) -> None:
    print(
        f"\n3d. secrets extracted verbatim by prompting 'my PIN is ' (no DP runs of 3c), per "
        f"round r (the global model after r rounds; client 0's after its local training in "
        f"round r): greedy / greedy-or-any-of-16-samples, summed over seeds {seeds}"
    )
    for key, n in (("global", 18), ("client", 3)):
        label = "global model" if key == "global" else "client 0's local model"
        per_round = [
            (
                sum(r["extracted"][key][t][0] for r in runs),
                sum(r["extracted"][key][t][1] for r in runs),
            )
            for t in range(ROUNDS)
        ]
        cells = " ".join(f"{int(g)}/{int(e)}" for g, e in per_round)
        print(f"   {label} ({n} secrets × {len(runs)} seeds), rounds 0–{ROUNDS - 1}: {cells}")


def bench_public_data(
    seeds: list[int],
    steps: tuple[int, ...] = (0, 150, 600),
    no_dp: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The public-data half of 3d: the same workload from bases pre-trained for ``steps``."""
    print(
        f"\n3d'. against the public data the base saw (pre-training steps × 1,024 tokens), "
        f"last round, summed over seeds {seeds}; exposure of the ×16 PINs median (min–max)"
    )
    out: dict[str, Any] = {}
    for n_steps in steps:
        if n_steps == 600 and no_dp is not None:
            runs = no_dp  # the no-DP runs of 3c
        else:
            runs = [run_memorization(seed, pretrain_steps=n_steps) for seed in seeds]
        out[str(n_steps)] = runs
        g = sum(r["extracted"]["global"][-1][0] for r in runs)
        e = sum(r["extracted"]["global"][-1][1] for r in runs)
        cg = sum(r["extracted"]["client"][-1][0] for r in runs)
        ce = sum(r["extracted"]["client"][-1][1] for r in runs)
        exp16 = _spread([r["exposure"][16] for r in runs])
        ppl = _spread([r["perplexity"] for r in runs])
        base = _spread([r["base_perplexity"] for r in runs])
        print(
            f"   {n_steps:>5} steps ({n_steps * 1024:>7,} tokens): global {g:.0f}/{e:.0f} of "
            f"{18 * len(runs)}, client 0 {cg:.0f}/{ce:.0f} of {3 * len(runs)}; exposure ×16 "
            f"{exp16}; perplexity {ppl} (base before fine-tuning {base})"
        )
    return out


def bench_fedrand_mia(seeds: list[int]) -> dict[str, Any]:
    """3e: the lora_privacy matrix's sequence_membership × {lora, fedrand} cells, per seed."""
    from fedguard.launch import execute
    from fedguard.matrix.cell import cell_metrics
    from fedguard.matrix.config import expand_cells, load_matrix

    cfg, base = load_matrix(MATRIX)
    cfg = cfg.model_copy(update={"seeds": seeds})
    cells = [
        c
        for c in expand_cells(cfg, base)
        if c.attack.startswith("sequence_membership") and c.defense in ("lora", "fedrand")
    ]
    print(
        f"\n3e. FedRand vs LoRA, client-level membership inference against client 0 "
        f"({MATRIX.name}: sequence_membership cells), mean ± sd over seeds {seeds}"
    )
    out: dict[str, dict[str, list[float]]] = {}
    for cell in sorted(cells, key=lambda c: (c.defense, c.seed)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            metrics = cell_metrics(cell.spec, execute(cell.spec))
        row = out.setdefault(cell.defense, {"lira": [], "loss": [], "perplexity": []})
        row["lira"].append(float(metrics["sequence_membership.lira.auc"]))
        row["loss"].append(float(metrics["sequence_membership.loss.auc"]))
        row["perplexity"].append(math.exp(float(metrics["test_loss"])))
    for name, row in out.items():
        print(
            f"   {name:>8}: LiRA AUC {_sd(row['lira'])}, loss AUC {_sd(row['loss'])}, "
            f"perplexity {_sd(row['perplexity'])}"
        )
    if {"lora", "fedrand"} <= set(out) and len(seeds) > 1:
        print(f"   paired by seed, FedRand − LoRA: LiRA AUC {_paired(out['fedrand'], out['lora'])}")
    return out


def _paired(a: dict[str, list[float]], b: dict[str, list[float]]) -> str:
    """Mean ± standard error of the per-seed differences of the LiRA AUCs (same data, seed)."""
    diffs = [x - y for x, y in zip(a["lira"], b["lira"], strict=True)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{statistics.mean(diffs):+.3f} ± {se:.3f} (s.e., n = {len(diffs)})"


def claims_lines(results: dict[str, Any]) -> list[str]:
    """One verdict line per claim measured here, for :func:`bench_language.papers_claims`."""
    lines = []
    memo = results.get("memorization")
    if memo is not None:
        runs = memo["runs"]
        plain = runs["no DP"]
        rising = sum(r["exposure"][1] < r["exposure"][4] < r["exposure"][16] for r in plain)
        lines.append(
            f"does exposure rise with repetitions (Carlini et al. 2019)? ×1 < ×4 < ×16 on {rising} "
            f"of {len(plain)} seeds (median ×1 {_med(plain, 1):.2f}, ×4 {_med(plain, 4):.2f}, "
            f"×16 {_med(plain, 16):.2f} bits)"
        )
        for label, dp_runs in runs.items():
            if label in ("no DP", "LoRA, no DP"):
                continue
            adapters = label.startswith("LoRA")  # compared with LoRA without DP
            base = runs["LoRA, no DP"] if adapters else plain
            lower = sum(
                d["exposure"][16] < p["exposure"][16] for d, p in zip(dp_runs, base, strict=True)
            )
            eps = statistics.median(r["epsilon"] for r in dp_runs)
            lines.append(
                f"does exposure fall under {label} (ε = {eps:.3g})? ×16 exposure below the no-DP "
                f"run's on {lower} of {len(base)} seeds ({_med(dp_runs, 16):.2f} vs "
                f"{_med(base, 16):.2f} bits), at perplexity "
                f"{statistics.median(r['perplexity'] for r in dp_runs):.2f} vs "
                f"{statistics.median(r['perplexity'] for r in base):.2f}"
            )
            if not adapters and all("early" in p for p in plain):  # at comparable perplexity
                lower = sum(
                    d["exposure"][16] < p["early"][16] for d, p in zip(dp_runs, plain, strict=True)
                )
                early = statistics.median(p["early"][16] for p in plain)
                early_ppl = statistics.median(p["early_perplexity"] for p in plain)
                lines.append(
                    f"  … and below plain training after {EARLY_ROUND} round(s) (perplexity "
                    f"{early_ppl:.2f}) on {lower} of {len(plain)} seeds ({_med(dp_runs, 16):.2f} "
                    f"vs {early:.2f} bits)"
                )
    public = results.get("public")
    if public is not None:
        counts = {k: sum(r["extracted"]["client"][-1][1] for r in v) for k, v in public.items()}
        text = ", ".join(f"{k} steps: {v:.0f}" for k, v in counts.items())
        lines.append(f"extraction from client 0's model against pre-training steps: {text}")
    fedrand = results.get("fedrand")
    if fedrand is not None and {"lora", "fedrand"} <= set(fedrand):
        lo, fr = fedrand["lora"], fedrand["fedrand"]
        lower = sum(f < g for f, g in zip(fr["lira"], lo["lira"], strict=True))
        lines.append(
            f"FedRand's LiRA AUC below LoRA's (Park et al. 2025) on {lower} of {len(lo['lira'])} "
            f"seeds: {_sd(fr['lira'])} vs {_sd(lo['lira'])}, at perplexity "
            f"{_sd(fr['perplexity'])} vs {_sd(lo['perplexity'])}; paired difference "
            f"{_paired(fr, lo)}"
        )
    return lines


def _med(runs: list[dict[str, Any]], rep: int) -> float:
    return statistics.median(r["exposure"][rep] for r in runs)


__all__ = [
    "bench_fedrand_mia",
    "bench_memorization",
    "bench_public_data",
    "claims_lines",
    "memorization_spec",
    "run_memorization",
]
