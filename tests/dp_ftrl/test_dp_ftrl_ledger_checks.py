"""The ledger cross-checks re-derive DP-FTRL / BandMF events from the spec and the participation
the records show (issue 22): honest runs pass every check (before: "not checkable"), and a
ledger that lowers a noise multiplier or a sensitivity, or records whose participation breaks
the min-separation schedule, are flagged — by the round-by-round comparison with the derived
events and, independently, by the sensitivity the realised participation implies."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ftrl_spec import SEPARATION, ftrl_spec

from benchmarks.faults.forgery import read_ledger, reseal
from fedguard.audit.ledger_checks import CrossCheckResult, cross_check, cross_check_data
from fedguard.audit.matrix_checks import realised_prefix_sensitivity
from fedguard.cli.main import main
from fedguard.config import RunSpec
from fedguard.core.sampling import min_separation_groups
from fedguard.launch import execute
from fedguard.storage.run_dir import RunDirectory

PATH = "defense.server_transforms[0]"
BANDMF = {"name": "bandmf", "bands": SEPARATION, "noise_multiplier": 2.0}
TREE = {"name": "dp_ftrl_tree", "estimator": "honaker", "noise_multiplier": 2.0}


def make_spec(server: dict[str, Any], **clients: Any) -> RunSpec:
    return ftrl_spec("ftrl-ledger", server, **clients)


def _run(root: Path, name: str, spec: RunSpec) -> RunDirectory:
    execute(spec, root / name)
    return RunDirectory(root / name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, RunDirectory]:
    root = tmp_path_factory.mktemp("ftrl_ledger")
    return {
        "bandmf": _run(root, "bandmf", make_spec(BANDMF)),
        "tree": _run(root, "tree", make_spec(TREE)),
        "amplified": _run(root, "amplified", make_spec(BANDMF, sampling_rate=0.5)),
    }


def _check(
    run: RunDirectory,
    ledger: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
) -> CrossCheckResult:
    return cross_check_data(
        run.spec(),
        records if records is not None else [dict(r) for r in run.rounds()],
        ledger if ledger is not None else run.ledger(),
        run.summary(),
    )


def _failed(result: CrossCheckResult) -> dict[str, str]:
    return {c.name: c.detail for c in result.failures}


@pytest.mark.parametrize("kind", ["bandmf", "tree", "amplified"])
def test_honest_runs_pass_every_check(runs: dict[str, RunDirectory], kind: str) -> None:
    result = cross_check(runs[kind])
    statuses = {c.name: c.status for c in result.checks}
    # before: 'mechanisms' was not_checked ("not a mechanism these checks know")
    assert set(statuses.values()) == {"passed"}, result.checks
    for name in ("event", "noise_multiplier", "sensitivity", "prefix_sensitivity"):
        assert statuses[f"{PATH}.{name}"] == "passed"
    assert statuses[f"{PATH} schedule"] == "passed"
    assert statuses[f"{PATH} realised sensitivity"] == "passed"
    assert result.line() == f"cross-checks passed ({len(statuses)} of {len(statuses)})"


def _matrix_events(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in ledger["rounds"]:
        for event in entry["population"]:
            out.append(event.get("event", event))  # the inner event of a Sampled one
    return out


def test_a_lower_noise_multiplier_is_flagged(runs: dict[str, RunDirectory]) -> None:
    ledger = copy.deepcopy(runs["bandmf"].ledger())
    ledger["rounds"][3]["population"][0]["noise_multiplier"] *= 0.5
    failed = _failed(_check(runs["bandmf"], ledger))
    assert set(failed) == {f"{PATH}.noise_multiplier"}
    assert failed[f"{PATH}.noise_multiplier"].startswith("ledger round 4: noise_multiplier")


@pytest.mark.parametrize("kind", ["tree", "amplified"])
def test_a_lower_noise_multiplier_is_flagged_for_trees_and_amplified_bandmf(
    runs: dict[str, RunDirectory], kind: str
) -> None:
    ledger = copy.deepcopy(runs[kind].ledger())
    _matrix_events(ledger)[0]["noise_multiplier"] *= 0.9
    assert f"{PATH}.noise_multiplier" in _failed(_check(runs[kind], ledger))


def test_a_lower_sensitivity_is_flagged_also_by_the_realised_participation(
    runs: dict[str, RunDirectory],
) -> None:
    # the ledger claims each client's participations cost half the squared sensitivity (μ_t
    # lower by √2): consistent in itself — multipliers, sensitivities and prefixes all scaled
    ledger = copy.deepcopy(runs["bandmf"].ledger())
    for event in _matrix_events(ledger):
        event["sensitivity"] /= math.sqrt(2)
        event["prefix_sensitivity"] /= math.sqrt(2)
        event["noise_multiplier"] *= math.sqrt(2)
    failed = _failed(_check(runs["bandmf"], ledger))
    assert {f"{PATH}.sensitivity", f"{PATH}.prefix_sensitivity", f"{PATH}.noise_multiplier"} <= set(
        failed
    )
    realised = failed[f"{PATH} realised sensitivity"]
    assert realised.startswith("ledger round 1: the prefix sensitivity it states is 0.555")
    assert "the ledger under-reports" in realised


def test_an_under_reporting_prefix_is_caught_by_the_composition_too(
    runs: dict[str, RunDirectory],
) -> None:
    # only the multipliers raised (prefix sensitivities left): μ of the ledger falls short
    ledger = copy.deepcopy(runs["tree"].ledger())
    for event in _matrix_events(ledger):
        event["noise_multiplier"] *= 1.5
    failed = _failed(_check(runs["tree"], ledger))
    assert "its multipliers compose to μ" in failed[f"{PATH} realised sensitivity"]


def test_a_participation_that_breaks_min_separation_is_flagged(
    runs: dict[str, RunDirectory],
) -> None:
    run = runs["bandmf"]
    records = [dict(r) for r in run.rounds()]
    # a client of round 1 (group 0) also takes part in round 2, in place of one of group 1's
    # clients: the cohort size stays 4, so the cohort-size check cannot see it
    intruder = sorted(int(k) for k in records[0]["weights"])[0]
    weights = dict(records[1]["weights"])
    weights.pop(sorted(weights)[0])
    weights[str(intruder)] = 0.25
    records[1]["weights"] = weights
    groups = min_separation_groups(12, SEPARATION, 4)
    assert groups[intruder] == 0
    failed = _failed(_check(run, records=records))
    assert set(failed) == {f"{PATH} schedule", f"{PATH} realised sensitivity"}
    assert failed[f"{PATH} schedule"] == (
        f"rounds.jsonl round 2: client {intruder} (group 0) took part, but round 2 draws only "
        "from group 1 of clients.min_separation 3, 1 rounds after its last."
    )
    # rounds 1 and 2 share C's bands: the realised sensitivity exceeds the ledger's 0.922
    assert failed[f"{PATH} realised sensitivity"].startswith(
        "ledger round 2: the prefix sensitivity it states is 0.922"
    )


def test_realised_sensitivity_matches_the_closed_forms() -> None:
    # C = I (independent noise): √k for k participations; the tree: √(participations · levels)
    assert realised_prefix_sensitivity(np.eye(4), np.arange(4), [(0, 2)])[-1] == pytest.approx(
        math.sqrt(2)
    )
    from fedguard.defenses.dp_ftrl.tree_factorization import tree_factorization

    tree = tree_factorization(8, 8, "plain")
    # every round: column t of C is covered by log2(8) + 1 = 4 nodes, ‖C·1‖² = Σ_nodes len²
    everyone = realised_prefix_sensitivity(tree.strategy, tree.release_round, [tuple(range(8))])
    assert everyone[-1] ** 2 == pytest.approx(8 * 1 + 4 * 4 + 2 * 16 + 64)
    once = realised_prefix_sensitivity(tree.strategy, tree.release_round, [(3,)])
    assert once[-1] ** 2 == pytest.approx(4)
    assert once[2] == 0.0  # nothing about round 3 is released before round 3


def test_audit_prints_the_cross_check_and_epsilon_per_unit(
    runs: dict[str, RunDirectory],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["fedguard", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = cli("audit", str(runs["bandmf"].path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("evidence: seal ok") and "not checkable" not in lines[0]
    matrix = next(line for line in lines if line.startswith("matrix mechanism"))
    assert "bandmf realised sensitivity 1.414 ≤ ledger's 1.414 clip norms" in matrix
    assert "respect clients.min_separation 3" in matrix and matrix.endswith("cross-checks passed")
    assert "client-level" in out and "ε after each" in out
    # a forged ledger, re-sealed with hashlib alone: exit 2, one sentence, nothing printed
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(runs["bandmf"].path, forged)
    document = read_ledger(forged)
    document["rounds"][0]["population"][0]["noise_multiplier"] *= 3
    reseal(forged, document)
    code, out, err = cli("audit", str(forged))
    assert code == 2 and "Traceback" not in err
    assert "ledger round 1: noise_multiplier" in err and out == ""


def test_realised_sensitivity_of_a_signed_strategy_is_the_brute_force_sum() -> None:
    rng = np.random.default_rng(0)
    rounds = 7
    strategy = np.tril(rng.normal(size=(rounds, rounds)))  # signed: the general path
    release = np.arange(rounds)
    patterns = [(0, 3, 6), (1, 4), (2, 5), (0, 1, 2, 3, 4, 5, 6)]
    got = realised_prefix_sensitivity(strategy, release, patterns)
    for t in range(rounds):
        released = strategy[: t + 1]
        absolute = np.abs(released.T @ released)
        brute = max(float(absolute[np.ix_(p, p)].sum()) for p in patterns)
        assert got[t] ** 2 == pytest.approx(brute, rel=1e-12)
    # a non-negative strategy gives the same through either path
    positive = np.abs(strategy)
    fast = realised_prefix_sensitivity(positive, release, patterns)
    from fedguard.audit.matrix_checks import _signed_prefix

    assert np.allclose(fast, _signed_prefix(positive, release, patterns), rtol=1e-12)


def test_a_spec_whose_events_cannot_be_derived_is_not_checkable_and_says_why(
    runs: dict[str, RunDirectory],
) -> None:
    run = runs["bandmf"]
    # bands above the separation cannot be amplified: the mechanism refuses that schedule
    spec = run.spec().with_overrides(**{"clients.sampling_rate": 0.5, "clients.min_separation": 2})
    result = cross_check_data(spec, [dict(r) for r in run.rounds()], run.ledger(), run.summary())
    skipped = {c.name: c.detail for c in result.checks if c.status == "not_checked"}
    assert "amplified bandmf needs bands" in skipped["mechanisms"]
    assert "not checkable" in result.line()
