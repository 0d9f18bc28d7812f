"""Forged ledgers: are they caught by the cross-checks and by ``fedguard verify``?

The adversary of issue 14: a DP-FedAvg run of 6 rounds (noise multiplier 1, ε ≈ 9 at δ = 1e-5)
whose ``ledger.jsonl`` is edited to claim less privacy spent, then re-sealed with ``hashlib``
alone (the SHA-256 "seal" is public: anyone can recompute it). Forgeries tried:

1. ``noise ×10`` — every noise multiplier in the ledger raised from 1 to 10;
2. ``drop 4 of 6`` — ledger rounds 3–6 removed;
3. ``noise ×10 + drop`` — both;
4. ``drop everywhere`` — rounds 3–6 removed from ledger.jsonl, rounds.jsonl and complete.json alike;
5. ``spec edited too`` — noise ×10 in the ledger *and* in spec.yaml: the folder now claims a
   different run. The cross-checks compare the ledger with the spec, so they cannot catch it
   (reported separately); only ``verify`` (a replay) can.

Prints ``forged ledgers caught by cross-checks: N/N, by verify: N/N`` (forgeries 1–4), the
spec-edit line, and that the honest run passes both. Run on its own::

    PYTHONPATH=$PWD python -m benchmarks.faults.forgery

``run() -> dict`` is the section entry point for ``benchmarks/bench_faults.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

#: a small DP-FedAvg run: 6 rounds, Poisson q = 0.5, z = 1, C = 0.5
DP_RUN: dict[str, Any] = {
    "name": "forgery",
    "seed": 0,
    "rounds": 6,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [16]},
    "clients": {
        "n_clients": 10,
        "sampling": "poisson",
        "sampling_rate": 0.5,
        "weighting": "uniform",
    },
    "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
    "defense": {
        "aggregator": "mean",
        "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
        "server_transforms": [
            {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
        ],
    },
    "privacy": {"delta": 1e-5},
}


# --------------------------------------------------------------------------------------------
# The adversary: plain file edits and hashlib, nothing of fedguard's


def read_ledger(run: Path) -> dict[str, Any]:
    """The ledger journal as a document ``{"header": {...}, "rounds": [...]}`` (chains dropped)."""
    lines = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in line.items() if k != "chain"} for line in lines]
    return {"header": strip[0], "rounds": strip[1:], **strip[0]}


def reseal(run: Path, document: dict[str, Any]) -> None:
    """Write ``document`` back as ``ledger.jsonl`` with every SHA-256 chain value recomputed —
    hashlib alone, as anyone can. Top-level header fields edited in ``document`` win."""
    header = {**document["header"], **{k: document[k] for k in document["header"] if k in document}}
    out, previous = [], ""
    for body in [header, *document["rounds"]]:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        previous = hashlib.sha256(previous.encode() + canonical.encode()).hexdigest()
        out.append(json.dumps({**body, "chain": previous}, sort_keys=True) + "\n")
    (run / "ledger.jsonl").write_text("".join(out))


def _raise_noise(node: Any, factor: float) -> None:
    if isinstance(node, dict):
        if node.get("type") == "gaussian":
            node["noise_multiplier"] = node["noise_multiplier"] * factor
        for value in node.values():
            _raise_noise(value, factor)
    elif isinstance(node, list):
        for value in node:
            _raise_noise(value, factor)


def forge_noise(run: Path, factor: float = 10.0) -> None:
    """Every noise multiplier in ledger.jsonl × ``factor``, re-sealed."""
    doc = read_ledger(run)
    _raise_noise(doc["rounds"], factor)
    reseal(run, doc)


def forge_drop(run: Path, keep: int = 2) -> None:
    """Only the first ``keep`` rounds left in ledger.jsonl, re-sealed."""
    doc = read_ledger(run)
    doc["rounds"] = doc["rounds"][:keep]
    reseal(run, doc)


def forge_drop_everywhere(run: Path, keep: int = 2) -> None:
    """Rounds after ``keep`` removed from ledger.jsonl, rounds.jsonl and complete.json."""
    forge_drop(run, keep)
    lines = (run / "rounds.jsonl").read_text().splitlines(keepends=True)
    (run / "rounds.jsonl").write_text("".join(lines[:keep]))
    summary = json.loads((run / "complete.json").read_text())
    summary["rounds_completed"] = keep
    (run / "complete.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def forge_spec_too(run: Path, factor: float = 10.0) -> None:
    """Noise × ``factor`` in ledger.jsonl and in spec.yaml's central_gaussian."""
    forge_noise(run, factor)
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    for transform in spec["defense"]["server_transforms"]:
        if "noise_multiplier" in transform["params"]:
            transform["params"]["noise_multiplier"] *= factor
    (run / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=True))
    reseal_spec_hash(run)


def reseal_spec_hash(run: Path) -> None:
    """Recompute the spec hash complete.json records, as a forger can (it catches accidents)."""
    from fedguard.storage.run_dir import spec_file_hash

    spec = yaml.safe_load((run / "spec.yaml").read_text())
    version = json.loads((run / "env.json").read_text())["fedguard"]
    summary = json.loads((run / "complete.json").read_text())
    summary["spec_hash"] = spec_file_hash(spec, version)
    (run / "complete.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _both(run: Path) -> None:
    forge_noise(run)
    forge_drop(run)


FORGERIES: dict[str, Callable[[Path], None]] = {
    "noise ×10": forge_noise,
    "drop 4 of 6": forge_drop,
    "noise ×10 + drop": _both,
    "drop everywhere": forge_drop_everywhere,
}


# --------------------------------------------------------------------------------------------
# The checks


def make_run(root: Path, config: dict[str, Any] | None = None) -> Path:
    """Train the DP run (in process) into ``root/honest``."""
    from fedguard.config import parse_spec
    from fedguard.launch import execute

    out = root / "honest"
    execute(parse_spec(config or DP_RUN), out)
    return out


def judge(run: Path) -> dict[str, Any]:
    """Cross-checks and verify on ``run``: whether each passed, and the first failure."""
    from fedguard.audit.ledger_checks import cross_check
    from fedguard.audit.replay import replay
    from fedguard.errors import UserError
    from fedguard.storage.run_dir import RunDirectory

    run_dir = RunDirectory(run)
    try:
        checks = cross_check(run_dir)
        checks_pass, why = checks.passed, (checks.failures[0].detail if checks.failures else "")
    except UserError as err:  # a broken seal or unreadable file also refuses the folder
        checks_pass, why = False, str(err)
    result = replay(run_dir)
    differ = [c.detail for c in result.comparisons if c.compared and not c.matched]
    return {
        "cross_checks_pass": checks_pass,
        "cross_check_failure": why,
        "verify_matches": result.matched,
        "verify_difference": differ[0] if differ else "",
    }


def run() -> dict[str, Any]:
    from fedguard.audit.ledger_checks import cross_check
    from fedguard.privacy.budget import epsilon_of_ledger
    from fedguard.storage.run_dir import RunDirectory

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        honest = make_run(root)
        honest_eps = epsilon_of_ledger(RunDirectory(honest).ledger(), 1e-5)
        results: dict[str, dict[str, Any]] = {"honest": judge(honest)}
        forged_eps: dict[str, float] = {}
        for name, forge in [*FORGERIES.items(), ("spec edited too", forge_spec_too)]:
            copy = root / f"forged-{len(results)}"
            shutil.copytree(honest, copy)
            forge(copy)
            forged_eps[name] = epsilon_of_ledger(RunDirectory(copy).ledger(), 1e-5)
            results[name] = judge(copy)
        assert cross_check(RunDirectory(honest)).passed
    n = len(FORGERIES)
    by_checks = sum(not results[k]["cross_checks_pass"] for k in FORGERIES)
    by_verify = sum(not results[k]["verify_matches"] for k in FORGERIES)
    spec_too = results["spec edited too"]
    print(f"forged ledgers caught by cross-checks: {by_checks}/{n}, by verify: {by_verify}/{n}")
    print(
        "forgery that also edits spec.yaml caught by cross-checks: "
        f"{0 if spec_too['cross_checks_pass'] else 1}/1 (the spec is the claim itself), "
        f"by verify: {0 if spec_too['verify_matches'] else 1}/1"
    )
    honest_ok = results["honest"]["cross_checks_pass"] and results["honest"]["verify_matches"]
    print(f"honest run passes cross-checks and verify: {'yes' if honest_ok else 'NO'}")
    print(f"ε (RDP, δ = 1e-5): honest {honest_eps:.3f}; as the forged ledgers claim:")
    for name, eps in forged_eps.items():
        r = results[name]
        print(
            f"  {name:<18} ε {eps:8.3f} | cross-checks: "
            f"{'passed' if r['cross_checks_pass'] else 'caught — ' + r['cross_check_failure']}"
        )
        print(
            f"  {'':<18}            | verify: "
            f"{'matched' if r['verify_matches'] else 'caught — ' + r['verify_difference']}"
        )
    seconds = time.perf_counter() - started
    print(f"({seconds:.1f} s: one training run, {len(results)} replays)")
    return {
        "forged": n,
        "caught_by_cross_checks": by_checks,
        "caught_by_verify": by_verify,
        "spec_edit_caught_by_cross_checks": not spec_too["cross_checks_pass"],
        "spec_edit_caught_by_verify": not spec_too["verify_matches"],
        "honest_passes": honest_ok,
        "honest_epsilon": honest_eps,
        "forged_epsilon": forged_eps,
        "results": results,
    }


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    run()
