"""Run a spec to completion with checkpoints, resume, and a progress bar."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedguard.config import RunSpec
from fedguard.core.simulation import Simulation, SimulationState
from fedguard.errors import UserError
from fedguard.storage.run_dir import RunDirectory

ProgressFn = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class RunResult:
    spec: RunSpec
    records: list[dict[str, Any]]
    ledger: dict[str, Any]
    summary: dict[str, Any]
    directory: Path | None
    simulation: Simulation


def default_run_dir(spec: RunSpec, root: Path = Path("reports/runs")) -> Path:
    return root / f"{spec.name}-{spec.spec_hash()}"


def execute(
    spec: RunSpec,
    out: Path | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
    simulation: Simulation | None = None,
) -> RunResult:
    """Train ``spec``; with ``out`` write (or resume) a run directory there.

    Everything that can fail on user input (components, data, device) is checked before the
    directory is created, so a bad config never leaves a half-written run behind.
    """
    sim = simulation or Simulation(spec)
    state: SimulationState = sim.initial_state()
    records: list[dict[str, Any]] = []
    ledger: dict[str, Any] = {"sampling": sim.sampling, "delta": spec.privacy.delta, "rounds": []}
    run_dir = RunDirectory(out) if out is not None else None
    if run_dir is not None:
        if resume and run_dir.exists() and (run_dir.path / "state.pt").is_file():
            saved = run_dir.load_state()
            state = SimulationState.from_dict(saved)
            records = run_dir.rounds()[: state.round]
            ledger = run_dir.ledger()
            ledger["rounds"] = ledger.get("rounds", [])[: state.round]
        elif run_dir.exists() and not resume:
            if run_dir.complete:
                raise UserError(f"{out} already holds a completed run; choose another --out.")
            raise UserError(f"{out} holds an interrupted run; continue it with --resume {out}.")
        else:
            run_dir.start(spec, sim.data.report())

    started = time.perf_counter()
    while state.round < spec.rounds:
        state, output = sim.run_round(state)
        records.append(output.record)
        ledger["rounds"].append({"round": state.round, **output.events})
        if run_dir is not None:
            if output.updates is not None:
                run_dir.save_updates(state.round, output.updates)
            run_dir.checkpoint(records, ledger, state.to_dict())
        if progress is not None:
            progress(state.round, spec.rounds, output.record)
        if "diverged" in output.record:
            break  # a non-finite model: nothing later can be trusted (the record says why)
        stop = spec.privacy.stop_at_epsilon
        if stop is not None and _spent(ledger, spec) >= stop:
            records[-1]["stopped"] = "privacy budget spent"
            break

    summary = summarize(spec, records, sim, time.perf_counter() - started)
    if records and "diverged" in records[-1]:
        summary["diverged"] = records[-1]["diverged"]
    if sim.privacy_outputs:
        metrics, artifacts = privacy_attack_results(sim, out)
        summary["privacy_attacks"] = metrics
        summary["artifacts"] = artifacts
    if run_dir is not None:
        run_dir.finish(
            {
                "params": state.params.cpu(),
                "names": list(sim.model.layout.names),
                "shapes": [list(s) for s in sim.model.layout.shapes],
            },
            summary,
        )
    return RunResult(spec, records, ledger, summary, out, sim)


def _spent(ledger: dict[str, Any], spec: RunSpec) -> float:
    from fedguard.privacy.budget import epsilon_of_ledger

    return epsilon_of_ledger(ledger, spec.privacy.delta)


def privacy_attack_results(
    sim: Simulation, directory: Path | None
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each privacy attack's metrics averaged over the rounds it attacked, and the report
    artifacts (image grids, ROC data) of its last attack, written under ``directory/artifacts``."""
    truth = sim.truth()
    rows: dict[str, list[dict[str, float]]] = {}
    last: dict[str, tuple[Any, Any]] = {}
    for _, attack, output in sim.privacy_outputs:
        if output is None:
            continue
        name = attack.registry_name or type(attack).__name__
        rows.setdefault(name, []).append(attack.metrics(output, truth))
        last[name] = (attack, output)
    metrics: dict[str, dict[str, float]] = {}
    for name, results in rows.items():
        keys = dict.fromkeys(k for r in results for k in r)
        values = {k: [float(r[k]) for r in results if _finite(r.get(k))] for k in keys}
        metrics[name] = {k: sum(v) / len(v) for k, v in values.items() if v}
    artifacts: dict[str, str] = {}
    if directory is not None:
        for attack, output in last.values():
            written = attack.artifacts(output, truth, directory / "artifacts")
            artifacts.update({caption: f"artifacts/{f}" for caption, f in written.items()})
    return metrics, artifacts


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def summarize(
    spec: RunSpec, records: list[dict[str, Any]], sim: Simulation, seconds: float
) -> dict[str, Any]:
    evaluated = [r for r in records if "test_accuracy" in r]
    last = evaluated[-1] if evaluated else {}
    secs = sorted(r.get("train_seconds", 0.0) for r in records)
    return {
        "name": spec.name,
        "spec_hash": spec.spec_hash(),
        "rounds_completed": len(records),
        "final_test_accuracy": last.get("test_accuracy"),
        "final_test_loss": last.get("test_loss"),
        "backdoor_success": last.get("backdoor_success"),
        "malicious_clients": list(sim.malicious),
        "free_rider_clients": list(sim.free_riders),
        "median_train_seconds": secs[len(secs) // 2] if secs else None,
        "wall_seconds": seconds,
        "saved_updates": spec.save_updates,
        "dp_noise": "OS CSPRNG (not reproducible)"
        if spec.privacy.secure_rng
        else "seeded simulation (reproducible from the seed)",
    }
