"""Secure aggregation under tampering, and what the active-adversary variant costs.

1. **Tampering trials.** Random single-bit flips, truncations, replays (a message of the
   previous round, or a duplicate) and header rewrites (round, sender, receiver, stage; and a
   previous round's body under the current header) of one message of a random type and step,
   on the complete graph (n = 6) and on a SecAgg+ graph (n = 10, k = 4), for the
   honest-but-curious protocol with the consistency round and for the active variant. Each
   outcome is one of: rejected (``ProtocolViolation`` naming the message being processed),
   aborted (``ProtocolAbort``: too few parties left, nothing revealed), exact (the sum equals
   the plaintext sum of the reported survivors — checked against that oracle, so the tamper
   had no effect on the result) or **silently wrong**. Goal: 0 silently wrong (active).
2. **Cost** of the active variant against the honest-but-curious one, per client and at the
   server, at n = 100 (complete graph) and n = 500 (SecAgg+), d = 10^5, no dropouts.
3. **Server vs the self-mask expansion floor**: the server's seconds per round (no dropouts)
   against expanding the n self-masks PRG(b_u), timed apart and — the goal's measure (≤ 2×),
   robust to the load of a shared machine — inside the same round (the seconds the server's
   unmasking step spends on exactly that), median over the runs.

Usage: ``PYTHONPATH=$PWD python benchmarks/bench_secagg_adversarial.py [--trials 1200]
[--full]``; without ``--full`` the n = 500 cell uses d = 10^4 (the shared 2-core machine);
``--full`` runs d = 10^5 there too.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch

from defenses.secure_aggregation import crypto, prg
from defenses.secure_aggregation.errors import ProtocolAbort, ProtocolViolation
from defenses.secure_aggregation.graph import complete_graph, default_degree, harary_graph
from defenses.secure_aggregation.messages import HEADER_BYTES, SERVER, Stage, pack, payload, peek
from defenses.secure_aggregation.protocol import ProtocolConfig, run_protocol

STAGES = tuple(Stage)
KINDS = ("bit flip", "truncation", "replay", "header rewrite")
NAMED = re.compile(r"\b(" + "|".join(s.name for s in Stage) + r")\b")


def _inputs(ids: tuple[int, ...], d: int, bits: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = np.uint32 if bits <= 32 else np.uint64
    return {u: rng.integers(0, 2**bits, d, dtype=np.uint64).astype(dtype) for u in ids}


def _config(graph: dict[int, frozenset[int]], active: bool, round_index: int) -> ProtocolConfig:
    m = max(len(v) + 1 for v in graph.values())
    return ProtocolConfig(
        round_index=round_index,
        dim=8,
        bits=20,
        threshold=m // 2 + 1,
        graph=graph,
        consistency_check=True,
        active_adversary=active,
    )


def _rewrite(msg: bytes, rng: np.random.Generator, ids: tuple[int, ...], rnd: int) -> bytes:
    """One header field changed to another plausible value."""
    h = peek(msg)
    field = int(rng.integers(0, 4))
    stage, round_index, sender, receiver = h.stage, h.round_index, h.sender, h.receiver
    if field == 0:
        round_index = rnd + int(rng.choice([-1, 1]))
    elif field == 1:
        sender = int(rng.choice([u for u in ids if u != sender] + [SERVER]))
    elif field == 2:
        receiver = int(rng.choice([u for u in ids if u != receiver] + [SERVER]))
    else:
        stage = Stage(int(rng.choice([s for s in STAGES if s != stage])))
    return pack(stage, round_index, sender, receiver, payload(msg))


def trial_table(n_trials: int, seed: int) -> bool:
    if n_trials < 1:
        print("\n## Tampering trials: not run (--trials 0)")
        return False
    rng = np.random.default_rng(seed)
    setups = {
        "secagg n=6": complete_graph(tuple(range(6))),
        "secagg_plus n=10 k=4": harary_graph(tuple(range(10)), 4, torch.Generator().manual_seed(1)),
    }
    print(f"\n## Tampering trials ({n_trials} per variant, seed {seed})\n")
    all_ok = True
    for active in (False, True):
        label = "active" if active else "honest-but-curious + consistency round"
        outcome: Counter[tuple[str, str]] = Counter()
        by_stage: Counter[tuple[str, str]] = Counter()
        unnamed = 0
        for i in range(n_trials):
            name = list(setups)[i % len(setups)]
            graph = setups[name]
            ids = tuple(sorted(graph))
            x = _inputs(ids, 8, 20, i)
            identities = {u: crypto.new_signing_key() for u in ids}
            previous: dict[Stage, list[bytes]] = {}

            def spy(stage: Stage, msgs: list[bytes], previous: dict = previous) -> list[bytes]:
                previous[stage] = list(msgs)
                return msgs

            run_protocol(_config(graph, active, 6), x, intercept=spy, identities=identities)
            stage = STAGES[int(rng.integers(0, len(STAGES)))]  # all exist (consistency on)
            kind = KINDS[int(rng.integers(0, len(KINDS)))]
            pick = rng.random()

            def tamper(
                s: Stage,
                msgs: list[bytes],
                stage: Stage = stage,
                kind: str = kind,
                pick: float = pick,
                ids: tuple[int, ...] = ids,
                previous: dict = previous,
            ) -> list[bytes]:
                if s != stage or not msgs:
                    return msgs
                j = int(pick * len(msgs))
                m = msgs[j]
                if kind == "bit flip":
                    b = bytearray(m)
                    pos = int(rng.integers(0, 8 * len(b)))
                    b[pos // 8] ^= 1 << (pos % 8)
                    new = [bytes(b)]
                elif kind == "truncation":
                    new = [m[: int(rng.integers(0, len(m)))]]
                elif kind == "replay":
                    old = [o for o in previous.get(s, []) if peek(o).sender == peek(m).sender]
                    if old and rng.random() < 0.5:  # last round's message as it was
                        new = [old[0]]
                    else:  # the same message twice
                        new = [m, m]
                else:
                    old = [o for o in previous.get(s, []) if peek(o).sender == peek(m).sender]
                    if old and rng.random() < 0.5:  # last round's body under this header
                        h = peek(m)
                        body = old[0][HEADER_BYTES:]
                        new = [pack(h.stage, h.round_index, h.sender, h.receiver, b"") + body]
                    else:
                        new = [_rewrite(m, rng, ids, 7)]
                return [*msgs[:j], *new, *msgs[j + 1 :]]

            try:
                res = run_protocol(
                    _config(graph, active, 7), x, intercept=tamper, identities=identities
                )
            except ProtocolViolation as exc:
                result = "rejected"
                unnamed += NAMED.search(str(exc)) is None
            except ProtocolAbort:
                result = "aborted"
            else:
                exact = [int(v) for v in res.residue_sum] == [
                    sum(int(x[u][j]) for u in res.survivors) % 2**20 for j in range(8)
                ]
                result = "exact" if exact else "SILENTLY WRONG"
            outcome[(kind, result)] += 1
            by_stage[(stage.name, result)] += 1
        results = ("rejected", "aborted", "exact", "SILENTLY WRONG")
        print(f"### {label}\n")
        print(f"{'tamper':<16}" + "".join(f"{r:>16}" for r in results))
        for kind in KINDS:
            print(f"{kind:<16}" + "".join(f"{outcome[(kind, r)]:>16}" for r in results))
        print(
            f"{'total':<16}"
            + "".join(f"{sum(outcome[(k, r)] for k in KINDS):>16}" for r in results)
        )
        wrong_stages = sorted({s for (s, r) in by_stage if r == "SILENTLY WRONG"})
        wrong = sum(outcome[(k, "SILENTLY WRONG")] for k in KINDS)
        print(
            f"\nsilently wrong sums: {wrong} of {n_trials}"
            + (f" (tampered stages: {', '.join(wrong_stages)})" if wrong_stages else "")
            + f"; rejections not naming a message: {unnamed}\n"
        )
        if active:
            all_ok = wrong == 0 and unnamed == 0
    print(
        "rejected: ProtocolViolation naming the message being processed; aborted: "
        "ProtocolAbort (too few parties remained,\nnothing revealed); exact: the sum equals "
        "the plaintext sum of the reported survivors (checked), i.e. the tamper had no effect."
    )
    return all_ok


def _self_mask_floor(n: int, d: int, dtype: np.dtype, repeat: int = 3) -> float:
    """Seconds to expand and subtract n self-masks PRG(b_u) of d words: the server's floor."""
    best = float("inf")
    seeds = [os.urandom(32) for _ in range(n)]
    for _ in range(repeat):
        acc = np.zeros(d, dtype=dtype)
        t0 = time.perf_counter()
        for s in seeds:
            prg.accumulate(acc, s, -1)
        best = min(best, time.perf_counter() - t0)
    return best


def _run(
    n: int, d: int, plus: bool, active: bool, inputs: Mapping[int, np.ndarray]
) -> tuple[float, float, float, float]:
    ids = tuple(range(n))
    if plus:
        k = default_degree(n)
        graph = harary_graph(ids, k, torch.Generator().manual_seed(0))
    else:
        graph = complete_graph(ids)
    m = max(len(v) + 1 for v in graph.values())
    cfg = ProtocolConfig(
        round_index=1,
        dim=d,
        bits=32,
        threshold=m // 2 + 1,
        graph=graph,
        active_adversary=active,
    )
    res = run_protocol(cfg, inputs)
    client = float(np.mean([c.seconds for c in res.client_costs.values()]))
    sent = float(np.mean([c.bytes_sent for c in res.client_costs.values()]))
    return client, res.server_cost.seconds, sent, res.server_self_mask_seconds


def cost_table(full: bool, repeat: int) -> bool:
    cells = [(100, 100_000, False), (500, 100_000 if full else 10_000, True)]
    print(
        f"\n## Cost: active vs honest-but-curious (no dropouts; best of {repeat} at n = 100, "
        "one run at n = 500)\n"
    )
    head = (
        f"{'n':>4} {'d':>7} {'graph':<11} {'client s':>9} {'active':>9} {'x':>6} "
        f"{'server s':>9} {'active':>9} {'x':>6} {'sent/client B':>14} {'active':>10}"
    )
    print(head)
    print("-" * len(head))
    ok = True
    floors: list[str] = []
    for n, d, plus in cells:
        started = time.perf_counter()
        x = _inputs(tuple(range(n)), d, 32, n)
        best: dict[bool, tuple[float, float, float]] = {}
        paired: dict[bool, list[float]] = {}
        # n = 500: the one-process simulation verifies n² consistency signatures per run
        reps = repeat if n <= 100 else 1
        for active in (False, True):
            runs = [_run(n, d, plus, active, x) for _ in range(reps)]
            best[active] = (
                min(r[0] for r in runs),
                min(r[1] for r in runs),
                runs[0][2],
            )
            # the server's time over its own self-mask expansion, in the same round: both
            # measured within milliseconds of each other, so the machine's load cancels
            paired[active] = sorted(r[1] / r[3] for r in runs if r[3] > 0)
        floor = _self_mask_floor(n, d, np.dtype(np.uint32))
        plain = min(
            _timed(lambda x=x: np.add.reduce(np.stack(list(x.values())), axis=0)) for _ in range(3)
        )
        h, a = best[False], best[True]
        graph = "secagg_plus" if plus else "secagg"
        print(
            f"{n:>4} {d:>7} {graph:<11} {h[0]:>9.4f} {a[0]:>9.4f} {a[0] / h[0]:>6.2f} "
            f"{h[1]:>9.4f} {a[1]:>9.4f} {a[1] / h[1]:>6.2f} {h[2]:>14.0f} {a[2]:>10.0f}"
        )
        ratio_h, ratio_a = h[1] / floor, a[1] / floor
        in_run_h = float(np.median(paired[False])) if paired[False] else float("nan")
        in_run_a = float(np.median(paired[True])) if paired[True] else float("nan")
        spread = (
            f" (range {paired[False][0]:.2f}–{paired[False][-1]:.2f} over {len(paired[False])})"
            if paired[False]
            else ""
        )
        floors.append(
            f"{n:>4} {d:>7} {graph:<11} floor {floor:.4f} s, plaintext sum {plain:.4f} s; "
            f"server/floor: honest {ratio_h:.2f}x, active {ratio_a:.2f}x; server/own "
            f"self-mask expansion in the same round (median): honest {in_run_h:.2f}x{spread}, "
            f"active {in_run_a:.2f}x"
        )
        if n == 100:
            ok = in_run_h <= 2.0
        print(f"{'':>4} (cell took {time.perf_counter() - started:.0f} s)")
    print(
        "\nclient s: mean compute seconds per client (all protocol steps; inputs already "
        "encoded); server s: server compute per round;\nx: active / honest; sent/client: "
        "bytes a client sends per round."
    )
    print("\n## Server vs the self-mask expansion floor (same run; goal: server ≤ 2x floor)\n")
    for line in floors:
        print(line)
    print(
        "floor: expanding and subtracting the n self-masks PRG(b_u) of d words (ChaCha20), "
        "which any server must do, timed apart;\nserver/own self-mask expansion: the server's "
        "seconds over the seconds its unmasking step spent on exactly that, in each round (the\n"
        "goal's measure: the two are timed in the same round, so load on a shared machine "
        "cancels); plaintext sum: the n inputs summed in the clear."
    )
    return ok


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1200, help="tampering trials per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="n = 500 at d = 10^5 too")
    parser.add_argument("--repeat", type=int, default=3, help="cost runs per cell (best of)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials_ok = trial_table(args.trials, args.seed)
    cost_ok = cost_table(args.full, args.repeat)
    print(
        f"\nverdict: tampering {'PASS' if trials_ok else 'FAIL / not run'} (0 silently wrong sums "
        f"for the active variant, every rejection names its message); server at n = 100 "
        f"{'within' if cost_ok else 'ABOVE'} 2x the self-mask floor (honest variant)."
    )


if __name__ == "__main__":
    main()
