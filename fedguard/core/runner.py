"""Run a simulation to completion with checkpoints, resume, and a progress bar."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedguard.core.simulation import RoundOutput, Simulation, SimulationState
from fedguard.errors import UserError
from fedguard.metrics.test_accuracy import majority_share
from fedguard.spec import RunSpec
from fedguard.storage.run_dir import STATE, RunDirectory
from fedguard.storage.run_journal import RunJournal

if TYPE_CHECKING:  # the accountants load scipy: imported when a run first asks for ε
    from fedguard.privacy.budget import RunLedgers

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


def run_simulation(
    sim: Simulation,
    out: Path | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
) -> RunResult:
    """Train ``sim`` to the end of its spec; with ``out`` write (or resume) a run directory there
    (:func:`fedguard.launch.execute` builds the simulation from a spec first).

    Everything that can fail on user input (components, data, device) is checked before the
    directory is created, so a bad config never leaves a half-written run behind. Each round is
    committed once (:class:`~fedguard.storage.run_journal.RunJournal`): its record — privacy
    attacks' metrics included — and its ledger line are appended, then the state is replaced, so
    a crash at any instant resumes to the same records, ledger and ε.
    """
    spec = sim.spec
    state: SimulationState = sim.initial_state()
    records: list[dict[str, Any]] = []
    ledger: dict[str, Any] = {"sampling": sim.sampling, "delta": spec.privacy.delta, "rounds": []}
    run_dir = RunDirectory(out) if out is not None else None
    journal: RunJournal | None = None
    if run_dir is not None:
        if resume and run_dir.exists() and (run_dir.path / STATE).is_file():
            journal, saved, records, ledger = RunJournal.resume(run_dir, spec)
            saved.pop("journal", None)
            state = SimulationState.from_dict(saved)
        elif run_dir.exists() and not resume:
            if run_dir.complete:
                raise UserError(f"{out} already holds a completed run; choose another --out.")
            raise UserError(f"{out} holds an interrupted run; continue it with --resume {out}.")
        else:
            journal = RunJournal.create(run_dir, spec, sim.data.report(), sim.sampling)

    player = RoundPlayer(sim, out)
    started = time.perf_counter()
    stopped = bool(records) and ("stopped" in records[-1] or "diverged" in records[-1])
    while state.round < spec.rounds and not stopped:
        state, output, stopped = player.play(state, ledger)
        record = output.record
        records.append(record)
        if run_dir is not None and journal is not None:
            if output.updates is not None:
                run_dir.save_updates(state.round, output.updates)
            journal.commit(record, ledger["rounds"][-1], state.to_dict())
        if progress is not None:
            progress(state.round, spec.rounds, record)

    summary = summarize(spec, records, sim, time.perf_counter() - started)
    if records and "diverged" in records[-1]:
        summary["diverged"] = records[-1]["diverged"]
    metrics, artifacts = privacy_attack_summary(records)
    if metrics:
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


class RoundPlayer:
    """One round as the runner plays it — used by ``execute`` and by ``verify``'s replay, so a
    replay can never drift from what a run records: privacy attacks scored into the round's
    record, the ledger entry appended, and the stop rules (divergence, spent budget) applied."""

    def __init__(self, sim: Simulation, directory: Path | None) -> None:
        self.sim, self.directory = sim, directory
        self._truth: Any = None  # built once, on the first round a privacy attack observes
        self._ledgers: RunLedgers | None = None  # built on the first stop_at_epsilon check

    def play(
        self, state: SimulationState, ledger: dict[str, Any]
    ) -> tuple[SimulationState, RoundOutput, bool]:
        """Run one round; returns the new state, its output (record completed) and whether the
        run must stop after it."""
        sim, spec = self.sim, self.sim.spec
        seen = len(sim.privacy_outputs)
        state, output = sim.run_round(state)
        record = output.record
        if len(sim.privacy_outputs) > seen:
            self._truth = sim.truth() if self._truth is None else self._truth
            record.update(attack_results(sim.privacy_outputs[seen:], self._truth, self.directory))
        ledger["rounds"].append({"round": state.round, **output.events.to_dict()})
        # a non-finite model: nothing later can be trusted (the record says why)
        stopped = "diverged" in record
        stop = spec.privacy.stop_at_epsilon
        if stop is not None and self._spent(ledger) >= stop:
            record["stopped"] = "privacy budget spent"  # part of the committed record
            stopped = True
        return state, output, stopped

    def _spent(self, ledger: dict[str, Any]) -> float:
        """The headline ε of ``ledger`` so far; its rounds are parsed once each."""
        from fedguard.privacy.budget import RunLedgers, headline_epsilon

        if self._ledgers is None:
            self._ledgers = RunLedgers(ledger)
        return headline_epsilon(self._ledgers.update(ledger), self.sim.spec.privacy.delta)


def attack_results(
    outputs: list[tuple[int, Any, Any]], truth: Any, directory: Path | None
) -> dict[str, Any]:
    """The privacy attacks of one round, scored against the ground truth, as part of the round's
    record (``privacy_attacks``: metrics per attack; ``artifacts``: captions → files written under
    ``directory/artifacts``), so that they are committed with the round and survive a resume."""
    metrics: dict[str, dict[str, float]] = {}
    artifacts: dict[str, str] = {}
    for key, attack, output in _keyed(outputs):
        if output is None:
            continue
        metrics[key] = {
            k: float(v) if _number(v) else v for k, v in attack.metrics(output, truth).items()
        }
        if directory is not None:
            # a second instance of an attack writes into its own folder (same file names)
            sub = "" if "#" not in key else f"{key.replace('#', '_')}/"
            written = attack.artifacts(output, truth, directory / "artifacts" / sub)
            artifacts.update(
                {
                    (caption if not sub else f"{key}: {caption}"): f"artifacts/{sub}{f}"
                    for caption, f in written.items()
                }
            )
    out: dict[str, Any] = {}
    if metrics:
        out["privacy_attacks"] = metrics
    if artifacts:
        out["artifacts"] = artifacts
    return out


def _keyed(outputs: list[tuple[int, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """Each privacy attack's key in records and summaries: its registered name, and for the
    k-th instance of a name listed more than once (two canary audits at different rounds, a
    global and a client target) ``name#k`` — one key per instance, so none overwrites another.
    ``outputs`` are in the spec's order, which fixes the numbering."""
    seen: dict[str, int] = {}
    keyed = []
    for _, attack, output in outputs:
        name = attack.registry_name or type(attack).__name__
        seen[name] = seen.get(name, 0) + 1
        keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", attack, output))
    return keyed


def privacy_attack_summary(
    records: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each privacy attack's metrics averaged over the rounds it attacked (finite values only),
    and the artifacts of its last attack — from the committed records alone."""
    rows: dict[str, list[dict[str, float]]] = {}
    artifacts: dict[str, str] = {}
    for record in records:
        for name, values in (record.get("privacy_attacks") or {}).items():
            rows.setdefault(name, []).append(values)
        artifacts.update(record.get("artifacts") or {})
    metrics: dict[str, dict[str, float]] = {}
    for name, results in rows.items():
        keys = dict.fromkeys(k for r in results for k in r)
        values = {k: [float(r[k]) for r in results if _finite(r.get(k))] for k in keys}
        metrics[name] = {k: sum(v) / len(v) for k, v in values.items() if v}
        for k in keys:  # notes and warnings (text): the last round's
            last = [r[k] for r in results if k in r and not _number(r[k])]
            if last and k not in metrics[name]:
                metrics[name][k] = last[-1]
    return metrics, artifacts


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def summarize(
    spec: RunSpec, records: list[dict[str, Any]], sim: Simulation, seconds: float
) -> dict[str, Any]:
    evaluated = [r for r in records if "test_accuracy" in r]
    last = evaluated[-1] if evaluated else {}
    secs = sorted(r.get("train_seconds", 0.0) for r in records)
    test = sim.data.test
    # what the accuracy is a proportion of (its interval and chance baseline when shown):
    # test samples, or, for next-token models, sequences averaging per-token accuracies
    size = {"test_sequences" if test.labels.dim() > 1 else "test_samples": len(test)}
    if sim.triggered is not None:  # what the backdoor success rate is a proportion of
        size["triggered_samples"] = len(sim.triggered[1])
    return {
        "name": spec.name,
        "spec_hash": spec.spec_hash(),
        "rounds_completed": len(records),
        "final_test_accuracy": last.get("test_accuracy"),
        "final_test_loss": last.get("test_loss"),
        **size,
        "n_classes": sim.data.n_classes,
        # the accuracy of always answering the test set's most frequent class (None for
        # next-token targets): on skewed data a stronger trivial baseline than 1/classes
        "majority_share": majority_share(test.labels),
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
