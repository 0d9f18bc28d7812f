"""Cross-checks of a run's privacy ledger against its ``spec.yaml`` and ``rounds.jsonl``.

The SHA-256 chain of ``ledger.jsonl`` catches accidental corruption only: anyone can recompute it.
A deliberate edit (a noise multiplier raised from 1 to 10, rounds dropped, then re-sealed) is
caught here, because the ledger is not free data — every event in it is a function of the run's
spec and of what its records say happened:

* ``rounds`` — the ledger holds one entry per recorded round, numbered 1, 2, …, as many as
  ``rounds.jsonl`` and ``complete.json`` say, and as ``spec.yaml``'s ``rounds`` allow;
* ``delta``, ``sampling`` — the ledger's δ and sampling description (scheme, rate, expected
  cohort, population, neighbouring relation) are the spec's;
* ``sampled events`` — every sampled population event carries the spec's rate, scheme and
  population;
* ``participants`` — each record's cohort size is possible under the spec's sampling, and the
  clients with events of their own are clients of the run that trained that round;
* ``mechanisms`` — each round holds one population event per DP mechanism of the spec that ran
  that round (none when the spec has none);
* one check per mechanism parameter (``defense.server_transforms[0].noise_multiplier``, …): the
  event's noise multiplier, sensitivity, surviving clients, … are those the mechanism computes
  from its parameters, the sampling's neighbouring relation and the round's record;
* DP-FTRL / BandMF (:mod:`fedguard.audit.matrix_checks`): each round's event is the one the
  strategy derives for the spec's horizon and schedule (rounds releasing nothing new file none),
  the participation the records show respects the min-separation schedule, and the sensitivity
  that participation realises never exceeds what the ledger states.

Mechanisms are recognised by their registry names; the event each one must have filed is
derived in :mod:`fedguard.audit.mechanism_events` (as ``defenses/dp`` documents it). A
component these checks do not know that looks like a noise mechanism (a parameter named
``*noise*``) makes the per-mechanism checks ``not_checked``, stated in the result, never
silently passed. Runs are read only through
:class:`~fedguard.storage.run_dir.RunDirectory` and events only through
:func:`fedguard.privacy.events.event_from_dict`.

References
----------
McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
ICLR 2018 (the DP-FedAvg event: Gaussian of multiplier z on a sum clipped to C, sampled).
Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism." 2019.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fedguard.audit.matrix_checks import (
    MATRIX_MECHANISMS,
    MatrixDerivation,
    derive,
    event_findings,
    run_findings,
)
from fedguard.audit.mechanism_events import (
    POPULATION_RULES,
    RoundEvents,
    Slot,
    client_rule,
    close,
    num,
)
from fedguard.config import ComponentSpec, RunSpec
from fedguard.core.sampling import min_separation_groups, sampling_description
from fedguard.errors import UserError
from fedguard.privacy.events import (
    PrivacyEvent,
    Sampled,
    event_from_dict,
    iter_events,
)
from fedguard.storage.run_dir import RunDirectory

Status = Literal["passed", "failed", "not_checked"]

#: population-event mechanisms by registry name → the stage that emits their event
POPULATION_MECHANISMS: dict[str, str] = {
    "distributed_gaussian": "client",
    "adaptive_clipping": "client",
    "secagg_discrete_gaussian": "transport",
    "secagg_skellam": "transport",
    "dp_brem_cc": "aggregator",
    "central_gaussian": "server",
    "dp_brem": "server",
}
#: mechanisms that file one event per participating client
CLIENT_MECHANISMS = ("dp_sgd", "rqm")
_STAGE_ORDER = ("client", "transport", "aggregator", "server")


class LedgerMismatchError(UserError):
    """The ledger says something its run's spec or records contradict (exit status 2)."""


@dataclass(frozen=True)
class Check:
    """One cross-check: its name, ``passed`` / ``failed`` / ``not_checked``, and a sentence."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class CrossCheckResult:
    """Every cross-check of one run, in the order they ran."""

    checks: tuple[Check, ...]

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "failed")

    @property
    def passed(self) -> bool:
        return not self.failures

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "not_checked": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def line(self) -> str:
        """``cross-checks passed (11 of 11)`` / ``… FAILED (…)`` / with not-checked counts."""
        n = self.counts()
        total = n["passed"] + n["failed"]
        word = "passed" if self.passed else "FAILED"
        extra = f", {n['not_checked']} not checkable" if n["not_checked"] else ""
        return f"cross-checks {word} ({n['passed']} of {total}{extra})"

    def raise_for_failure(self) -> None:
        """:class:`LedgerMismatchError` with the first failure's sentence, if any failed."""
        if self.failures:
            raise LedgerMismatchError(self.failures[0].detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


# --------------------------------------------------------------------------------------------
# Entry points


def cross_check(run: RunDirectory) -> CrossCheckResult:
    """Cross-check ``run``'s ledger against its spec and records (reads nothing else)."""
    records = run.rounds()
    if records and not run.has_ledger():
        # a missing ledger is not an empty one: whether a mechanism ran is unknown
        missing = (
            f"the ledger (ledger.jsonl) is missing but rounds.jsonl holds {len(records)} rounds."
        )
        return CrossCheckResult((Check("rounds", "failed", missing),))
    return cross_check_data(
        run.spec(), records, run.ledger(), run.summary() if run.complete else None
    )


def cross_check_data(
    spec: RunSpec,
    records: Sequence[Mapping[str, Any]],
    ledger: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
) -> CrossCheckResult:
    """The checks on data already read; ``summary`` is ``complete.json`` (None: interrupted)."""
    checker = _Checker()
    sampling = _spec_sampling(spec)
    bad = next((i for i, r in enumerate(records) if not isinstance(r, Mapping)), None)
    broken = [
        f"rounds.jsonl line {bad + 1}" if bad is not None else "",
        "" if isinstance(ledger, Mapping) else "ledger.jsonl",
        "" if summary is None or isinstance(summary, Mapping) else "complete.json",
    ]
    if any(broken):
        where = next(b for b in broken if b)
        checker.result("records", f"{where} is not a JSON object.", "")
        return CrossCheckResult(tuple(checker.checks))
    _check_rounds(checker, spec, records, ledger, summary)
    _check_header(checker, spec, ledger, sampling)
    rounds = _parse_rounds(checker, ledger)
    if rounds is not None:
        by_round = {r["round"]: r for r in records if isinstance(r.get("round"), int)}
        _check_sampled(checker, rounds, sampling)
        _check_participants(checker, spec, records)
        _check_mechanisms(checker, spec, rounds, by_round, sampling, records)
    return CrossCheckResult(tuple(checker.checks))


# --------------------------------------------------------------------------------------------
# Bookkeeping


@dataclass
class _Checker:
    checks: list[Check] = field(default_factory=list)

    def result(self, name: str, failure: str | None, passed: str) -> None:
        if failure is None:
            self.checks.append(Check(name, "passed", passed))
        else:
            self.checks.append(Check(name, "failed", failure))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "not_checked", why))


def _spec_sampling(spec: RunSpec) -> dict[str, Any]:
    c = spec.clients
    return sampling_description(
        c.sampling, c.n_clients, c.cohort_size or 0, c.sampling_rate or 0, c.min_separation or 1
    )


# --------------------------------------------------------------------------------------------
# Rounds, header


def _check_rounds(
    checker: _Checker,
    spec: RunSpec,
    records: Sequence[Mapping[str, Any]],
    ledger: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
) -> None:
    entries = ledger.get("rounds")
    failure: str | None = None
    if not isinstance(entries, list):
        failure = "ledger.jsonl has no list of rounds."
    else:
        numbers = [e.get("round") if isinstance(e, Mapping) else None for e in entries]
        record_numbers = [r.get("round") for r in records]
        n = len(entries)
        if numbers != list(range(1, n + 1)):
            bad = next(i for i, t in enumerate(numbers) if t != i + 1)
            failure = (
                f"ledger entry {bad + 1} is numbered round {numbers[bad]!r}; the ledger must hold "
                "rounds 1, 2, … in order."
            )
        elif record_numbers != list(range(1, len(records) + 1)):
            bad = next(i for i, t in enumerate(record_numbers) if t != i + 1)
            failure = (
                f"rounds.jsonl line {bad + 1} is numbered round {record_numbers[bad]!r}; records "
                "must be rounds 1, 2, … in order."
            )
        elif n != len(records):
            failure = (
                f"ledger.jsonl holds {n} rounds but rounds.jsonl holds {len(records)} "
                f"(spec.yaml's rounds is {spec.rounds})."
            )
        elif n > spec.rounds:
            failure = f"ledger.jsonl holds {n} rounds but spec.yaml's rounds is {spec.rounds}."
        elif summary is not None:
            done = summary.get("rounds_completed")
            if done != n:
                failure = (
                    f"ledger.jsonl holds {n} rounds but complete.json's rounds_completed is "
                    f"{done!r}."
                )
            elif n < spec.rounds:
                failure = _early_stop_failure(spec, ledger, n)
    checker.result(
        "rounds",
        failure,
        f"{len(records)} rounds in ledger.jsonl, rounds.jsonl"
        + (" and complete.json" if summary is not None else "")
        + f" (spec.yaml: {spec.rounds})",
    )


def _early_stop_failure(spec: RunSpec, ledger: Mapping[str, Any], n: int) -> str | None:
    """A complete run of fewer rounds than its spec stopped itself on ``stop_at_epsilon``: ε
    (RDP, as the round loop computes it) reached the budget after round n and not before."""
    from fedguard.privacy.budget import epsilon_of_ledger

    stop = spec.privacy.stop_at_epsilon
    short = f"ledger.jsonl holds {n} rounds but spec.yaml's rounds is {spec.rounds}"
    if stop is None:
        return f"{short} and its privacy.stop_at_epsilon is null (no reason to stop early)."
    spent = epsilon_of_ledger(ledger, spec.privacy.delta)
    if spent < stop:
        return (
            f"{short}, yet the ledger's ε {spent:.4g} is below spec.yaml's "
            f"privacy.stop_at_epsilon {stop:g} (no reason to stop early)."
        )
    before = {**ledger, "rounds": list(ledger.get("rounds") or [])[: n - 1]}
    if n > 1 and epsilon_of_ledger(before, spec.privacy.delta) >= stop:
        return (
            f"{short}: the ledger's ε had already reached spec.yaml's privacy.stop_at_epsilon "
            f"{stop:g} after round {n - 1}, so the run would have stopped there."
        )
    return None


def _check_header(
    checker: _Checker, spec: RunSpec, ledger: Mapping[str, Any], sampling: Mapping[str, Any]
) -> None:
    delta = ledger.get("delta")
    ok = isinstance(delta, int | float) and close(float(delta), spec.privacy.delta)
    checker.result(
        "delta",
        None
        if ok
        else f"ledger delta {num(delta)} does not match spec.yaml's privacy.delta "
        f"{num(spec.privacy.delta)}.",
        f"δ = {spec.privacy.delta:g}",
    )
    recorded = ledger.get("sampling")
    failure: str | None = None
    if not isinstance(recorded, Mapping):
        failure = "ledger.jsonl has no sampling description."
    else:
        for key, expected in sampling.items():
            actual = recorded.get(key)
            same = (
                close(float(actual), float(expected))
                if isinstance(expected, float) and isinstance(actual, int | float)
                else actual == expected
            )
            if not same:
                failure = (
                    f"ledger sampling {key} {num(actual)} does not match {num(expected)} implied "
                    f"by spec.yaml's clients (sampling {spec.clients.sampling!r})."
                )
                break
    checker.result(
        "sampling",
        failure,
        f"{sampling['scheme']}, rate {sampling['rate']:g}, population {sampling['population']}",
    )


def _event(data: Any) -> tuple[PrivacyEvent, str]:
    if not isinstance(data, Mapping):
        raise ValueError(f"an event must be a JSON object (got {data!r})")
    level = str(data.get("level", "client"))
    return event_from_dict({k: v for k, v in data.items() if k not in ("client", "level")}), level


def _parse_rounds(checker: _Checker, ledger: Mapping[str, Any]) -> list[RoundEvents] | None:
    out: list[RoundEvents] = []
    entries = ledger.get("rounds")
    if not isinstance(entries, list):
        checker.skip("events", "ledger.jsonl has no list of rounds.")
        return None
    for i, entry in enumerate(entries):
        try:
            parsed = [_event(d) for d in entry.get("population") or []]
            # user-level events (ULDP-AVG) sample users, not clients: the client-sampling and
            # client-mechanism checks below do not apply to them
            pop = tuple(event for event, level in parsed if level != "user")
            clients = {
                int(cid): tuple(_event(d) for d in evs)
                for cid, evs in (entry.get("clients") or {}).items()
            }
        except (UserError, ValueError, TypeError, AttributeError) as err:
            checker.result("events", f"ledger round {i + 1} holds an invalid event: {err}", "")
            return None
        out.append(RoundEvents(i + 1, pop, clients))
    checker.result("events", None, f"{sum(len(r.population) for r in out)} population events parse")
    return out


# --------------------------------------------------------------------------------------------
# Sampling and participants


def _check_sampled(
    checker: _Checker, rounds: Sequence[RoundEvents], sampling: Mapping[str, Any]
) -> None:
    failure: str | None = None
    seen = 0
    for r in rounds:
        for event in r.population:
            for node in iter_events(event):
                if not isinstance(node, Sampled):
                    continue
                seen += 1
                if sampling["scheme"] == "all":
                    failure = (
                        f"ledger round {r.number}: a sampled event (rate {node.rate:g}) but "
                        "spec.yaml's clients.sampling is 'all' (no sampling amplification)."
                    )
                elif not close(node.rate, float(sampling["rate"])):
                    failure = (
                        f"ledger round {r.number}: sampling rate {node.rate:g} does not match "
                        f"{float(sampling['rate']):g} implied by spec.yaml's clients."
                    )
                elif node.scheme != sampling["scheme"]:
                    failure = (
                        f"ledger round {r.number}: sampling scheme {node.scheme!r} does not match "
                        f"spec.yaml's clients.sampling ({sampling['scheme']!r})."
                    )
                elif node.population is not None and node.population != sampling["population"]:
                    failure = (
                        f"ledger round {r.number}: population {node.population} does not match "
                        f"spec.yaml's clients.n_clients {sampling['population']}."
                    )
                if failure:
                    break
            if failure:
                break
        if failure:
            break
    checker.result("sampled events", failure, f"{seen} sampled events carry the spec's sampling")


def _check_participants(
    checker: _Checker, spec: RunSpec, records: Sequence[Mapping[str, Any]]
) -> None:
    c = spec.clients
    failure: str | None = None
    for rec in records:
        n = rec.get("clients")
        t = rec.get("round")
        if not isinstance(n, int) or n < 0 or n > c.n_clients:
            failure = (
                f"rounds.jsonl round {t}: clients {n!r} is not a cohort size of spec.yaml's "
                f"clients.n_clients {c.n_clients}."
            )
        elif c.sampling == "all" and n != c.n_clients:
            failure = (
                f"rounds.jsonl round {t}: clients {n} does not match spec.yaml's "
                f"clients.n_clients {c.n_clients} (sampling 'all')."
            )
        elif c.sampling == "fixed" and n != c.cohort_size:
            failure = (
                f"rounds.jsonl round {t}: clients {n} does not match spec.yaml's "
                f"clients.cohort_size {c.cohort_size}."
            )
        elif c.sampling == "min_separation" and isinstance(t, int):
            failure = _min_separation_cohort(spec, n, t)
        if failure:
            break
    checker.result("participants", failure, f"every round's cohort fits clients.{c.sampling}")


def _min_separation_cohort(spec: RunSpec, n: int, t: int) -> str | None:
    """Round t (1-based) of a min-separation schedule draws from group (t − 1) mod b only, and
    takes all of it unless a sampling rate thins it."""
    c = spec.clients
    b = c.min_separation or 1
    seed = spec.seed if spec.training_seed is None else spec.training_seed
    group = int((min_separation_groups(c.n_clients, b, seed) == (t - 1) % b).sum())
    if n > group or (c.sampling_rate in (None, 1.0) and n != group):
        return (
            f"rounds.jsonl round {t}: clients {n} does not fit spec.yaml's min-separation "
            f"schedule (group {(t - 1) % b} of clients.min_separation {b} has {group} clients)."
        )
    return None


# --------------------------------------------------------------------------------------------
# Mechanisms


def _components(spec: RunSpec) -> list[tuple[str, ComponentSpec]]:
    d = spec.defense
    out = [(f"defense.client_transforms[{i}]", c) for i, c in enumerate(d.client_transforms)]
    out.append(("defense.transport", d.transport))
    out += [(f"defense.preaggregators[{i}]", c) for i, c in enumerate(d.preaggregators)]
    out.append(("defense.aggregator", d.aggregator))
    out += [(f"defense.server_transforms[{i}]", c) for i, c in enumerate(d.server_transforms)]
    return out


def _slots(spec: RunSpec) -> tuple[list[Slot], list[Slot], list[str]]:
    """Population mechanisms in the order their events are filed, client mechanisms, and the
    paths of unrecognised components that look like noise mechanisms."""
    population: list[Slot] = []
    per_client: list[Slot] = []
    unknown: list[str] = []
    for path, comp in _components(spec):
        if comp.name in POPULATION_MECHANISMS:
            population.append(Slot(path, comp.name, comp.params, POPULATION_MECHANISMS[comp.name]))
        elif comp.name in MATRIX_MECHANISMS and path.startswith("defense.server_transforms"):
            population.append(Slot(path, comp.name, comp.params, "server"))
        elif comp.name in CLIENT_MECHANISMS:
            per_client.append(Slot(path, comp.name, comp.params, "client"))
        elif any("noise" in key for key in comp.params):
            unknown.append(f"{path} ({comp.name})")
    population.sort(key=lambda s: _STAGE_ORDER.index(s.stage))
    return population, per_client, unknown


def _stages_run(record: Mapping[str, Any] | None) -> set[str]:
    """The stages whose mechanisms emit an event in a round, from what its record says."""
    if record is None:
        return set(_STAGE_ORDER)
    if record.get("aborted"):  # the transport gave up: only the client transforms had run
        return {"client"}
    if record.get("clients") == 0:  # an empty Poisson draw: the server still releases noise
        return {"server"}
    if record.get("aggregation_skipped"):
        return {"client", "transport", "server"}
    return set(_STAGE_ORDER)


def _check_mechanisms(
    checker: _Checker,
    spec: RunSpec,
    rounds: Sequence[RoundEvents],
    by_round: Mapping[int, Mapping[str, Any]],
    sampling: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> None:
    population, per_client, unknown = _slots(spec)
    matrices: dict[str, MatrixDerivation] = {}
    for slot in population:
        if slot.name in MATRIX_MECHANISMS:
            derived = derive(slot, spec)
            if isinstance(derived, str):
                checker.skip("mechanisms", derived)
                return
            matrices[slot.path] = derived
    if unknown:
        why = (
            f"spec.yaml's {', '.join(unknown)} is not a mechanism these checks know, so which "
            "events it files cannot be derived."
        )
        checker.skip("mechanisms", why)
        return

    def files_event(slot: Slot, number: int) -> bool:
        # a matrix mechanism files an event only when the released sensitivity grows
        ran = slot.stage in _stages_run(by_round.get(number))
        return ran and (slot.path not in matrices or matrices[slot.path].expects_event(number))

    failure: str | None = None
    names = ", ".join(f"{s.path} {s.name}" for s in population) or "none"
    for r in rounds:
        expected = [s for s in population if files_event(s, r.number)]
        if len(r.population) != len(expected):
            failure = (
                f"ledger round {r.number}: {len(r.population)} population privacy events where "
                f"spec.yaml's mechanisms ({names}) imply {len(expected)}."
            )
            break
        if not per_client and r.clients:
            failure = (
                f"ledger round {r.number}: client {min(r.clients)} has privacy events of its own, "
                "but spec.yaml has no per-client mechanism (dp_sgd, rqm)."
            )
            break
    checker.result("mechanisms", failure, f"one event per round and mechanism ({names})")
    if failure is not None:
        return
    results: dict[str, str | None] = {}
    for r in rounds:
        record = by_round.get(r.number, {})
        expected = [s for s in population if files_event(s, r.number)]
        for slot, event in zip(expected, r.population, strict=True):
            if slot.path in matrices:
                findings = event_findings(matrices[slot.path], r.number, event)
            else:
                findings = POPULATION_RULES[slot.name](
                    slot, event, r.number, record, spec, sampling
                )
            for key, failure_text in findings:
                if results.get(key) is None:
                    results[key] = failure_text
        for slot in per_client:
            for key, failure_text in client_rule(slot, r, record, spec):
                if results.get(key) is None:
                    results[key] = failure_text
    for key, failure_text in results.items():
        checker.result(key, failure_text, f"{key} matches every ledger round")
    for derivation in matrices.values():
        for finding in run_findings(derivation, spec, rounds, records):
            checker.result(finding.name, finding.failure, finding.passed)


__all__ = [
    "CLIENT_MECHANISMS",
    "POPULATION_MECHANISMS",
    "Check",
    "CrossCheckResult",
    "LedgerMismatchError",
    "cross_check",
    "cross_check_data",
]
