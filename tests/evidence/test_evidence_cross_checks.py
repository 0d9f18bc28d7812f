"""Cross-checks of the ledger against spec.yaml and rounds.jsonl (issue 14, item 2).

The forged ledgers are re-sealed with hashlib alone, as an adversary would: the SHA-256 seal
passes, so only the cross-checks can refuse them (on the old code `audit` printed ε 0.277 for
the run of ε 8.98 and exited 0).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.faults.forgery import (
    forge_drop,
    forge_drop_everywhere,
    forge_noise,
    read_ledger,
    reseal,
)
from fedguard.audit.ledger_checks import cross_check, cross_check_data
from fedguard.config import parse_spec
from fedguard.launch import execute
from fedguard.storage.run_dir import RunDirectory


def test_honest_run_passes_every_cross_check(honest_run: Path) -> None:
    result = cross_check(RunDirectory(honest_run))
    assert result.passed, result.failures
    statuses = {c.name: c.status for c in result.checks}
    assert set(statuses.values()) == {"passed"}
    for name in ("rounds", "delta", "sampling", "sampled events", "participants", "mechanisms"):
        assert statuses[name] == "passed"
    assert statuses["defense.server_transforms[0].noise_multiplier"] == "passed"
    assert statuses["defense.server_transforms[0].clip_norm"] == "passed"


def test_audit_and_show_state_the_checks_on_their_first_line(honest_run: Path, cli) -> None:
    code, out, err = cli("audit", str(honest_run))
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("evidence: seal ok")
    assert "cross-checks passed" in first and "signature absent" in first
    assert "verify not run" in first
    assert "ε = 8.98" in out.splitlines()[1]  # the honest figure, unchanged
    code, out, err = cli("show", str(honest_run))
    assert code == 0, err
    assert out.splitlines()[0].startswith("evidence: seal ok")
    code, out, err = cli("audit", str(honest_run), "--json")
    assert code == 0, err
    assert json.loads(out)["evidence"]["cross_checks"]["passed"] is True


@pytest.mark.parametrize("command", ["audit", "show", "report"])
def test_raised_noise_multiplier_is_exit_2_naming_the_field(run_copy: Path, cli, command) -> None:
    forge_noise(run_copy, 10.0)  # 1 → 10, re-sealed: the seal still verifies
    RunDirectory(run_copy).ledger()
    code, _out, err = cli(command, str(run_copy))
    assert code == 2
    assert (
        "ledger round 1: noise_multiplier 10 does not match spec.yaml's "
        "defense.server_transforms[0].noise_multiplier 1." in err
    )
    assert "Traceback" not in err
    assert not (run_copy / "report.html").exists()  # nothing half-written


@pytest.mark.parametrize("command", ["audit", "show", "report"])
def test_dropped_rounds_are_exit_2_naming_the_field(run_copy: Path, cli, command) -> None:
    forge_drop(run_copy, keep=2)  # 4 of 6 rounds gone, re-sealed
    code, _, err = cli(command, str(run_copy))
    assert code == 2
    assert "ledger.jsonl holds 2 rounds but rounds.jsonl holds 6" in err


def test_rounds_dropped_from_every_file_are_caught(run_copy: Path, cli) -> None:
    forge_drop_everywhere(run_copy, keep=2)
    code, _, err = cli("audit", str(run_copy))
    assert code == 2
    assert "ledger.jsonl holds 2 rounds but spec.yaml's rounds is 6" in err


def test_forged_folder_is_refused_by_the_real_entry_point(run_copy: Path) -> None:
    import subprocess
    import sys

    forge_noise(run_copy, 10.0)
    forge_drop(run_copy, keep=2)
    proc = subprocess.run(
        [sys.executable, "-m", "fedguard.cli.main", "audit", str(run_copy)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""  # no ε printed for a contradicted ledger
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# Every mechanism: an honest run passes; its event forged is caught, the field named

BASE: dict[str, Any] = {
    "name": "m",
    "seed": 0,
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "logreg"},
    "clients": {
        "n_clients": 8,
        "sampling": "poisson",
        "sampling_rate": 0.5,
        "weighting": "uniform",
    },
    "training": {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.1},
}
CLIP = {"name": "clip", "clip_norm": 0.5}
FIXED = {"n_clients": 8, "sampling": "fixed", "cohort_size": 4, "weighting": "uniform"}
CENTRAL = {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
MECHANISMS: dict[str, dict[str, Any]] = {
    "central_gaussian fixed cohort": {
        "clients": FIXED,
        "defense": {"client_transforms": [CLIP], "server_transforms": [CENTRAL]},
    },
    "distributed_gaussian": {
        "attack": {"n_malicious": 1, "model_attack": "sign_flip"},
        "defense": {
            "client_transforms": [
                {"name": "distributed_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
            ]
        },
    },
    "adaptive_clipping": {
        "defense": {"client_transforms": [{"name": "adaptive_clipping", "noise_multiplier": 1.0}]}
    },
    "dp_sgd": {
        "attack": {"free_riders": {"name": "zero", "count": 1}},
        "defense": {
            "client_transforms": [{"name": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0}]
        },
    },
    "rqm": {"defense": {"client_transforms": [{"name": "rqm"}]}},
    "dp_brem": {
        "defense": {
            "client_transforms": [CLIP, {"name": "momentum", "beta": 0.9}],
            "server_transforms": [{"name": "dp_brem", "clip_norm": 0.5, "beta": 0.9}],
        }
    },
    "dp_brem_cc": {
        "defense": {
            "aggregator": {"name": "dp_brem_cc", "clip_radius": 0.2, "noise_multiplier": 0.5},
            "client_transforms": [{"name": "momentum", "beta": 0.5}],
        }
    },
    "secagg_discrete_gaussian": {
        "defense": {
            "client_transforms": [CLIP],
            "transport": {"name": "secagg_discrete_gaussian", "clip_norm": 0.5, "scale": 64.0},
        }
    },
    "secagg_skellam": {
        "defense": {
            "client_transforms": [CLIP],
            "transport": {"name": "secagg_skellam", "clip_norm": 0.5, "scale": 64.0},
        }
    },
}


def _scale(node: Any, keys: tuple[str, ...], factor: float) -> None:
    """Multiply every numeric field named in ``keys`` of every event by ``factor``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys and isinstance(v, int | float):
                node[k] = type(v)(v * factor)
            else:
                _scale(v, keys, factor)
    elif isinstance(node, list):
        for v in node:
            _scale(v, keys, factor)


#: the forgery of each mechanism: (fields scaled ×factor, factor, the check that must fail)
FORGERY = {
    "central_gaussian fixed cohort": (("noise_multiplier",), 10, "noise_multiplier"),
    "distributed_gaussian": (("noise_multiplier",), 10, "noise_multiplier"),
    "adaptive_clipping": (("noise_multiplier",), 10, "noise_multiplier"),
    "dp_sgd": (("noise_multiplier",), 10, "noise_multiplier"),
    "rqm": (("levels",), 4, "levels"),
    "dp_brem": (("noise_multiplier",), 10, "noise_multiplier"),
    "dp_brem_cc": (("noise_multiplier",), 10, "noise_multiplier"),
    "secagg_discrete_gaussian": (("local_noise_stddev",), 10, "noise_multiplier"),
    "secagg_skellam": (("variance",), 100, "noise_multiplier"),
}


@pytest.fixture(scope="module")
def mechanism_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mechanisms")
    out = {}
    for name, extra in MECHANISMS.items():
        config = {**copy.deepcopy(BASE), **copy.deepcopy(extra)}
        out[name] = root / name.replace(" ", "_")
        execute(parse_spec(config), out[name])
    return out


def _read(run: Path) -> tuple[Any, list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    d = RunDirectory(run)
    return d.spec(), d.rounds(), d.ledger(), d.summary()


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_each_mechanism_honest_passes_and_forged_fails(mechanism_runs, mechanism: str) -> None:
    spec, records, ledger, summary = _read(mechanism_runs[mechanism])
    honest = cross_check_data(spec, records, ledger, summary)
    assert honest.passed, honest.failures
    assert not [c for c in honest.checks if c.status == "not_checked"]
    keys, factor, field = FORGERY[mechanism]
    forged = copy.deepcopy(ledger)
    _scale(forged["rounds"], keys, factor)
    result = cross_check_data(spec, records, forged, summary)
    assert not result.passed
    failed = result.failures[0]
    assert failed.name.endswith(field), failed
    # the first round that released anything (secure aggregation aborts a round whose Poisson
    # cohort is below its minimum of 3, and an aborted round has no event)
    first = next(r["round"] for r in ledger["rounds"] if r.get("population") or r.get("clients"))
    assert failed.detail.startswith(f"ledger round {first}: ")
    assert "spec.yaml's defense." in failed.detail


def test_fixed_cohort_records_half_the_multiplier_and_says_why(mechanism_runs) -> None:
    spec, records, ledger, summary = _read(mechanism_runs["central_gaussian fixed cohort"])
    event = ledger["rounds"][0]["population"][0]
    assert event["event"]["noise_multiplier"] == 0.5  # z/2: sensitivity 2C under replace-one
    forged = copy.deepcopy(ledger)
    _scale(forged["rounds"], ("noise_multiplier",), 2)  # claims z (Poisson's convention)
    detail = cross_check_data(spec, records, forged, summary).failures[0].detail
    assert "noise_multiplier 1 does not match 0.5, implied by spec.yaml's" in detail
    assert "replace-one" in detail


def test_participants_of_per_client_mechanisms_follow_the_records(mechanism_runs) -> None:
    spec, records, ledger, summary = _read(mechanism_runs["dp_sgd"])
    forged = copy.deepcopy(ledger)
    first = forged["rounds"][0]["clients"]
    free = set(records[0]["free_riders"])
    outsider = next(
        i for i in range(spec.clients.n_clients) if str(i) not in first and i not in free
    )
    first[str(outsider)] = copy.deepcopy(next(iter(first.values())))
    for e in first[str(outsider)]:
        e["client"] = outsider
    failed = cross_check_data(spec, records, forged, summary).failures[0]
    assert failed.name == "defense.client_transforms[0] participants"
    assert "clients have dp_sgd events but rounds.jsonl round 1 has" in failed.detail


def test_distributed_noise_follows_the_recorded_senders(mechanism_runs) -> None:
    spec, records, ledger, summary = _read(mechanism_runs["distributed_gaussian"])
    edited = copy.deepcopy(records)
    edited[1]["clients"] += 1  # a record claiming one more sender than the noise accounts for
    failed = cross_check_data(spec, edited, ledger, summary).failures
    assert failed and "round 2" in failed[0].detail


def test_secagg_noise_counts_the_recorded_survivors(mechanism_runs) -> None:
    spec, records, ledger, summary = _read(mechanism_runs["secagg_discrete_gaussian"])
    forged = copy.deepcopy(ledger)
    forged["rounds"][2]["population"][0]["n_clients"] += 3  # noise of clients that dropped out
    failed = cross_check_data(spec, records, forged, summary).failures[0]
    assert failed.name == "defense.transport survivors"
    assert failed.detail.startswith("ledger round 3: n_clients")


def test_wrong_sampling_and_delta_are_named(honest_run: Path) -> None:
    spec, records, ledger, summary = _read(honest_run)
    forged = copy.deepcopy(ledger)
    forged["rounds"][3]["population"][0]["rate"] = 0.01  # claims amplification by q = 0.01
    detail = cross_check_data(spec, records, forged, summary).failures[0].detail
    assert (
        detail
        == "ledger round 4: sampling rate 0.01 does not match 0.5 implied by spec.yaml's clients."
    )
    forged = {**copy.deepcopy(ledger), "delta": 1e-3}
    detail = cross_check_data(spec, records, forged, summary).failures[0].detail
    assert detail == "ledger delta 0.001 does not match spec.yaml's privacy.delta 1e-05."


def test_events_without_a_mechanism_in_the_spec_are_refused(honest_run: Path) -> None:
    spec, records, ledger, summary = _read(honest_run)
    data = spec.canonical()
    data["defense"]["server_transforms"] = []
    data["defense"]["client_transforms"] = []
    plain = parse_spec(data)
    detail = cross_check_data(plain, records, ledger, summary).failures[0].detail
    assert detail.startswith("ledger round 1: 1 population privacy events where spec.yaml's")
    assert "imply 0" in detail


def test_an_unknown_noise_mechanism_is_not_checked_and_says_so(honest_run: Path) -> None:
    spec, records, ledger, summary = _read(honest_run)
    data = spec.canonical()
    data["defense"]["server_transforms"] = [
        {"name": "third_party_noise", "params": {"noise_multiplier": 1.0}}
    ]
    result = cross_check_data(parse_spec(data), records, ledger, summary)
    assert result.passed  # nothing contradicted…
    skipped = [c for c in result.checks if c.status == "not_checked"]
    assert [c.name for c in skipped] == ["mechanisms"]  # …but not claimed as checked
    assert "third_party_noise" in skipped[0].detail
    assert "1 not checkable" in result.line()


def test_a_stopped_run_needs_its_budget_spent(tmp_path: Path) -> None:
    from benchmarks.faults.forgery import DP_RUN

    config = {**copy.deepcopy(DP_RUN), "privacy": {"delta": 1e-5, "stop_at_epsilon": 6.0}}
    execute(parse_spec(config), tmp_path / "stopped")
    spec, records, ledger, summary = _read(tmp_path / "stopped")
    assert len(records) < spec.rounds
    assert cross_check_data(spec, records, ledger, summary).passed
    data = spec.canonical()
    data["privacy"]["stop_at_epsilon"] = 100.0  # a budget the ledger never reached
    failed = cross_check_data(parse_spec(data), records, ledger, summary).failures[0]
    assert "below spec.yaml's privacy.stop_at_epsilon 100" in failed.detail


def test_a_reseal_with_hashlib_alone_passes_the_seal(run_copy: Path) -> None:
    # the premise: the seal is public, so it is no protection against a deliberate edit
    doc = read_ledger(run_copy)
    doc["delta"] = 0.5
    reseal(run_copy, doc)
    assert RunDirectory(run_copy).ledger()["delta"] == 0.5
    assert not cross_check(RunDirectory(run_copy)).passed


def test_the_report_opens_with_the_evidence(honest_run: Path, monkeypatch) -> None:
    import re

    from fedguard.report import builder, run_sections

    # the other sections are not under test here (and take seconds to draw)
    monkeypatch.setattr(builder, "privacy_section", lambda run: ("", ""))
    for name in ("training_section", "robustness_section", "findings"):
        monkeypatch.setattr(run_sections, name, lambda *args: "")
    html = builder.build_report(honest_run)
    sections = re.findall(r'data-section="([^"]+)"', html)
    assert sections[0] == "evidence"
    first = html.split('data-section="evidence"', 1)[1]
    statement = re.search(r"<p class=\"statement\" data-evidence>([^<]*)</p>", first)
    assert statement is not None
    assert statement.group(1).startswith("evidence: seal ok")
    assert "cross-checks passed (9 of 9)" in statement.group(1)


def test_malformed_records_are_a_failed_check_not_a_traceback(honest_run: Path) -> None:
    spec, records, ledger, summary = _read(honest_run)
    edited = copy.deepcopy(records)
    edited[2] = 5  # a line that is valid JSON but not a record
    failed = cross_check_data(spec, edited, ledger, summary).failures[0]
    assert failed.detail == "rounds.jsonl line 3 is not a JSON object."
    edited = copy.deepcopy(records)
    edited[1]["clients"] = "many"
    edited[1]["round"] = "two"
    failures = cross_check_data(spec, edited, ledger, summary).failures
    assert failures[0].detail.startswith("rounds.jsonl line 2 is numbered round 'two'")
    edited[1]["round"] = 2
    failures = cross_check_data(spec, edited, ledger, summary).failures
    assert failures[0].detail.startswith("rounds.jsonl round 2: clients 'many' is not a cohort")


def test_a_missing_ledger_is_not_an_empty_one(run_copy: Path, cli) -> None:
    (run_copy / "ledger.jsonl").unlink()  # the old code reported "no DP mechanism ran"
    code, _, err = cli("show", str(run_copy))
    assert code == 2
    assert "the ledger (ledger.jsonl) is missing but rounds.jsonl holds 6 rounds." in err
