"""``fedguard verify``: replay a run from its spec on CPU and compare it bit for bit.

A CPU run is deterministic (every random draw comes from the keyed streams of
:mod:`fedguard.rng`), so replaying ``spec.yaml`` must reproduce ``rounds.jsonl`` (wall-clock
fields excluded), the privacy ledger and ``model.pt`` exactly. Any difference means the folder
is not what its spec produces: an edited ledger, records or model, an edited spec, or a run made
by different code (``env.json`` names the versions).

Partial replay. ``rounds=K`` draws K distinct rounds at random (keyed by ``seed``; choose your
own seed so a forger cannot know which rounds you will check). The run folder keeps only the
final state, and round k needs the state after round k−1, so the replay runs every round up to
the largest one drawn and compares that whole prefix (which includes the K drawn rounds); the
final model is compared only when the prefix is the whole run. Nothing is written: the replay
runs in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedguard.errors import UserError
from fedguard.rng import numpy_generator
from fedguard.storage.run_dir import RunDirectory

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Comparison:
    """One thing compared: ``records``, ``ledger`` or ``model``; matched, or the first
    difference in a sentence. ``compared`` False: not comparable (said why in ``detail``)."""

    what: str
    matched: bool
    detail: str
    compared: bool = True


@dataclass(frozen=True)
class VerifyResult:
    rounds_total: int  # the spec's rounds (an interrupted run: the rounds it recorded)
    rounds_replayed: int  # the prefix replayed
    rounds_drawn: tuple[int, ...]  # the rounds drawn at random (all of them without --rounds)
    comparisons: tuple[Comparison, ...]

    @property
    def matched(self) -> bool:
        return all(c.matched for c in self.comparisons if c.compared)

    def line(self) -> str:
        word = "matched" if self.matched else "DIFFERED"
        scope = (
            "all rounds"
            if self.rounds_replayed == self.rounds_total
            and len(self.rounds_drawn) == self.rounds_total
            else f"rounds 1–{self.rounds_replayed} of {self.rounds_total}"
        )
        return f"verify {word} ({scope})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "rounds_total": self.rounds_total,
            "rounds_replayed": self.rounds_replayed,
            "rounds_drawn": list(self.rounds_drawn),
            "comparisons": [c.__dict__ for c in self.comparisons],
        }


def draw_rounds(total: int, k: int | None, seed: int) -> tuple[int, ...]:
    """K distinct rounds in 1..total, sorted (all of them when ``k`` is None)."""
    if k is None:
        return tuple(range(1, total + 1))
    if not 1 <= k <= total:
        raise UserError(f"--rounds must be between 1 and the run's {total} rounds (got {k}).")
    if seed < 0:
        raise UserError(f"--seed must be an integer >= 0 (got {seed}).")
    rng = numpy_generator(seed, -1, -1, "verify_rounds")
    return tuple(sorted(int(t) + 1 for t in rng.choice(total, size=k, replace=False)))


def replay(
    run: RunDirectory, rounds: int | None = None, seed: int = 0, progress: ProgressFn | None = None
) -> VerifyResult:
    """Replay ``run`` (all of it, or the prefix covering ``rounds`` drawn rounds) and compare."""
    from fedguard.core.runner import RoundPlayer
    from fedguard.launch import build_simulation

    spec = run.spec()
    if spec.privacy.secure_rng:
        raise UserError(
            "spec.yaml's privacy.secure_rng is true: its noise came from the OS CSPRNG, so the run "
            "cannot be replayed (only seeded runs can be verified)."
        )
    # an interrupted run is verified as far as it went; a complete one against its spec's rounds
    # (a complete run with fewer records must have stopped on its budget, which the replay redoes)
    available = spec.rounds if run.complete else len(run.rounds())
    if available == 0:
        raise UserError(f"{run.path} has no completed round to verify.")
    drawn = draw_rounds(available, rounds, seed)
    last = max(drawn)
    spec = spec.model_copy(update={"device": "cpu"})
    sim = build_simulation(spec)
    state = sim.initial_state()
    records: list[dict[str, Any]] = []
    ledger: dict[str, Any] = {"sampling": sim.sampling, "delta": spec.privacy.delta, "rounds": []}
    player = RoundPlayer(sim, None)  # the runner's own round: records compare like for like
    stopped = False
    while state.round < last and not stopped:
        state, output, stopped = player.play(state, ledger)
        records.append(output.record)
        if progress is not None:
            progress(state.round, last)
    whole = state.round == available or stopped
    comparisons = [
        compare_records(run.rounds(), _json(records), whole),
        compare_ledger(run.ledger(), _json(ledger), whole),
        compare_model(run, state.params, whole),
        compare_summary(run, sim, records, whole),
    ]
    return VerifyResult(available, state.round, drawn, tuple(comparisons))


def _json(value: Any) -> Any:
    """What the value looks like once written and read back (tuples → lists, int keys → str)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _wall_clock(key: str) -> bool:
    return key.endswith("seconds")


def _first_difference(stored: Any, replayed: Any, where: str) -> str | None:
    if isinstance(stored, Mapping) and isinstance(replayed, Mapping):
        for key in sorted(set(stored) | set(replayed)):
            if key not in replayed:
                return f"{where}{key} is in the run but not in the replay"
            if key not in stored:
                return f"{where}{key} is in the replay but not in the run"
            diff = _first_difference(stored[key], replayed[key], f"{where}{key}.")
            if diff:
                return diff
        return None
    if isinstance(stored, list) and isinstance(replayed, list):
        if len(stored) != len(replayed):
            return f"{where.rstrip('.')} has {len(stored)} entries in the run, {len(replayed)} replayed"
        for i, (a, b) in enumerate(zip(stored, replayed, strict=True)):
            diff = _first_difference(a, b, f"{where}{i}.")
            if diff:
                return diff
        return None
    if stored != replayed or type(stored) is not type(replayed):
        return f"{where.rstrip('.')} is {stored!r} in the run, {replayed!r} replayed"
    return None


def compare_records(
    stored: Sequence[Mapping[str, Any]], replayed: Sequence[Mapping[str, Any]], whole: bool
) -> Comparison:
    """Every replayed round's record against ``rounds.jsonl``, wall-clock fields excluded."""
    n = len(replayed)
    if len(stored) < n or (whole and len(stored) != n):
        return Comparison(
            "records", False, f"rounds.jsonl holds {len(stored)} rounds; the replay ran {n}."
        )
    for i in range(n):
        # artifact file names are where the run wrote its figures; the replay writes none
        a = {k: v for k, v in stored[i].items() if not _wall_clock(k) and k != "artifacts"}
        b = {k: v for k, v in replayed[i].items() if not _wall_clock(k) and k != "artifacts"}
        diff = _first_difference(a, b, "")
        if diff:
            return Comparison("records", False, f"rounds.jsonl round {i + 1}: {diff}.")
    return Comparison("records", True, f"{n} records identical (wall-clock fields excluded)")


def compare_ledger(
    stored: Mapping[str, Any], replayed: Mapping[str, Any], whole: bool
) -> Comparison:
    """The replayed ledger against ``ledger.jsonl`` (its checksum already verified)."""
    for key in ("sampling", "delta"):
        diff = _first_difference(stored.get(key), replayed.get(key), f"{key}.")
        if diff:
            return Comparison("ledger", False, f"ledger {diff}.")
    mine = list(replayed.get("rounds", []))
    theirs = list(stored.get("rounds", []))
    if len(theirs) < len(mine) or (whole and len(theirs) != len(mine)):
        return Comparison(
            "ledger", False, f"ledger.jsonl holds {len(theirs)} rounds; the replay ran {len(mine)}."
        )
    for i, entry in enumerate(mine):
        diff = _first_difference(theirs[i], entry, "")
        if diff:
            return Comparison("ledger", False, f"ledger round {i + 1}: {diff}.")
    return Comparison("ledger", True, f"{len(mine)} ledger rounds identical")


#: summary fields a replay cannot reproduce: wall-clock times, and the spec hash, which also
#: hashes fedguard's version (a replay by a newer release is still a replay of the same run)
_SUMMARY_EXCLUDED = ("spec_hash", "artifacts")
#: summary fields added after runs were first written: compared where the stored summary has
#: them (they restate the data: a changed test set shows in the accuracy as well)
_SUMMARY_ADDED = (
    "test_samples",
    "test_sequences",
    "n_classes",
    "majority_share",
    "triggered_samples",
)


def compare_summary(
    run: RunDirectory, sim: Any, records: list[dict[str, Any]], whole: bool
) -> Comparison:
    """``complete.json`` against the replay's summary: final metrics, roles, privacy-attack
    results (averaged over the rounds each attack observed)."""
    from fedguard.core.runner import privacy_attack_summary, summarize

    if not whole or not run.complete:
        return Comparison(
            "summary",
            True,
            "not compared: the replay does not cover a complete run",
            compared=False,
        )
    replayed = summarize(run.spec(), records, sim, 0.0)
    attacks, _ = privacy_attack_summary(records)
    if attacks:
        replayed["privacy_attacks"] = attacks
    stored = run.summary()

    def kept(summary: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: v for k, v in summary.items() if not _wall_clock(k) and k not in _SUMMARY_EXCLUDED
        }

    replayed = {k: v for k, v in replayed.items() if k in stored or k not in _SUMMARY_ADDED}
    diff = _first_difference(kept(stored), _json(kept(replayed)), "")
    if diff:
        return Comparison("summary", False, f"complete.json: {diff}.")
    return Comparison(
        "summary", True, "complete.json identical (wall-clock fields and spec hash excluded)"
    )


def compare_model(run: RunDirectory, params: torch.Tensor, whole: bool) -> Comparison:
    """The replayed final parameters against ``model.pt``, bit for bit."""
    if not whole:
        return Comparison(
            "model", True, "not compared: the replay stopped before the last round", compared=False
        )
    if not run.complete:
        return Comparison(
            "model", True, "not compared: the run is interrupted (no model.pt)", compared=False
        )
    stored = run.load_model()["params"]
    replayed = params.detach().cpu()
    if stored.shape != replayed.shape or stored.dtype != replayed.dtype:
        return Comparison(
            "model",
            False,
            f"model.pt holds {tuple(stored.shape)} {stored.dtype}; the replay made "
            f"{tuple(replayed.shape)} {replayed.dtype}.",
        )
    if not torch.equal(stored, replayed):
        differ = int((stored != replayed).sum())
        gap = float((stored - replayed).abs().max())
        return Comparison(
            "model",
            False,
            f"model.pt differs from the replay in {differ} of {stored.numel()} parameters "
            f"(largest difference {gap:.3g}).",
        )
    return Comparison("model", True, f"{stored.numel()} parameters identical bit for bit")


__all__ = ["Comparison", "VerifyResult", "draw_rounds", "replay"]
