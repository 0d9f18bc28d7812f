"""``fedguard audit`` / ``fedguard calibrate`` through the console entry point (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedguard.cli.audit_command import run_report, standalone_report
from fedguard.config import load_spec, parse_spec
from fedguard.errors import UserError
from fedguard.launch import execute

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fedguard.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_standalone_calculator_matches_reference_values() -> None:
    code, out, err = cli(
        "audit", "--sampling-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "1000",
        "--delta", "1e-5", "--accountant", "all", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["accountant"] == "rdp" and report["delta"] == 1e-5
    assert report["epsilon"] == pytest.approx(1.7118, abs=1e-3)  # ALGORITHMS.md reference
    assert report["accountants"]["prv"]["epsilon"] == pytest.approx(1.5255, abs=2e-3)
    assert report["accountants"]["pld"]["epsilon"] == pytest.approx(1.5154, abs=2e-3)


def test_calculator_fixed_cohort_is_accounted_without_replacement() -> None:
    report = standalone_report(0.01, 1.0, 10_000, 1e-5, "all", "fixed", 1000)  # in-process
    assert report["sampling"] == "without_replacement"
    # z = noise std ÷ clip norm (the config's meaning); replace-one sensitivity is 2C, so the
    # event's multiplier is 0.5. Before the fix the calculator read z against 2C: 13.15.
    assert report["epsilon"] == pytest.approx(118.7, abs=0.1)  # vs 6.71 under Poisson
    assert report["neighbouring_relation"] == "replace-one" and report["sensitivity"] == "2C"
    assert "unsupported" in report["accountants"]["pld"]  # PLD: no sampling w/o replacement
    assert "unsupported" in report["accountants"]["prv"]


def test_calibrate_inverts_the_calculator() -> None:
    code, out, err = cli(
        "calibrate", "--target-epsilon", "1.7118", "--delta", "1e-5", "--sampling-rate", "0.01",
        "--steps", "1000", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["noise_multiplier"] == pytest.approx(1.1, rel=2e-3)
    assert result["epsilon"] <= 1.7118


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise-multiplier", "-1", "--sampling-rate", "0.1", "--steps", "3"], "noise-multiplier"),
        (["--noise-multiplier", "1", "--sampling-rate", "0.1", "--steps", "3", "--delta", "1"],
         "delta"),
    ],
)  # fmt: skip
def test_bad_input_is_one_sentence_and_exit_2(args: list[str], message: str) -> None:
    code, _out, err = cli("audit", *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


TINY = {
    "name": "tiny_dp",
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [8]},
    "clients": {
        "n_clients": 10,
        "sampling": "poisson",
        "sampling_rate": 0.5,
        "weighting": "uniform",
    },
    "training": {"batch_size": 32, "learning_rate": 0.1},
    "defense": {
        "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
        "server_transforms": [
            {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
        ],
    },
}


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example config, 2 rounds, run in-process (faster than a subprocess)."""
    run = tmp_path_factory.mktemp("runs") / "dp_fedavg"
    execute(load_spec(ROOT / "configs/dp_fedavg.yaml", rounds=2), run)
    return run


def test_run_then_audit(dp_run: Path) -> None:
    code, out, err = cli("audit", str(dp_run), "--accountant", "all", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accountant"] == "rdp" and report["epsilon"] > 0
    eps = [e for _, e in report["epsilon_by_round"]]
    assert len(eps) == 2 and eps[0] < eps[1]
    # the ledger's ε equals the calculator's for the same (q, z, T): Poisson, add/remove
    calc = standalone_report(0.2, 1.0, 2, 1e-5, "rdp", "poisson", None)
    assert report["epsilon"] == pytest.approx(calc["epsilon"], rel=1e-9)
    client = report["levels"]["client"]["accountants"]
    assert client["pld"]["epsilon"] <= report["epsilon"]
    assert client["prv"]["epsilon"] == pytest.approx(client["pld"]["epsilon"], abs=0.05)
    assert report["budget"] == {"target_epsilon": 8.0, "within_budget": True}
    assert report["noise_source"].startswith("seeded")
    assert report["warnings"] == []
    assert (dp_run / "privacy_epsilon.png").stat().st_size > 1000
    text = run_report(dp_run, None, "rdp")
    assert text["epsilon"] == report["epsilon"]


def test_stop_at_epsilon_stops_the_run(tmp_path: Path) -> None:
    calc = [standalone_report(0.5, 1.0, t, 1e-5, "rdp", "poisson", None) for t in (1, 2)]
    budget = (calc[0]["epsilon"] + calc[1]["epsilon"]) / 2  # spent during round 2
    spec = parse_spec({**TINY, "rounds": 5, "privacy": {"stop_at_epsilon": budget}})
    result = execute(spec, tmp_path / "stopped")
    assert len(result.records) == 2
    report = run_report(tmp_path / "stopped", None, "rdp")
    assert report["rounds_recorded"] == 2 and report["stopped_early"]
    assert report["epsilon"] >= budget


def test_unsupported_event_warns_and_rdp_carries_it(tmp_path: Path) -> None:
    cfg = {
        **TINY,
        "defense": {"client_transforms": [{"name": "rqm", "clip": 0.05, "levels": 4}]},
        "model": {"name": "logreg"},
    }
    execute(parse_spec(cfg), tmp_path / "rqm")
    report = run_report(tmp_path / "rqm", 1e-5, "all")
    assert report["accountant"] == "rdp" and report["epsilon"] > 0
    assert any("pld" in w for w in report["warnings"])
    assert any("prv" in w for w in report["warnings"])
    d = sum(p.numel() for p in __import__("torch").nn.Linear(64, 10).parameters())
    assert report["communication"] == {
        "mechanism": "rqm", "bits_per_coordinate": 2.0, "bits_per_client_round": 2.0 * d
    }  # fmt: skip
    per_client = report["levels"]["client"]["accountants"]["rdp"]["per_client"]
    assert len(set(per_client.values())) >= 1 and len(per_client) >= 5


def test_empirical_audit_and_tampered_ledger(tmp_path: Path) -> None:
    run = tmp_path / "tiny"
    execute(parse_spec(TINY), run)
    code, out, err = cli("audit", str(run), "--empirical", "--canaries", "20")
    assert code == 0, err
    assert "empirical ε lower bound" in out
    audit = json.loads((run / "audit.json").read_text())
    assert set(audit) >= {
        "method",
        "confidence",
        "epsilon_lower_bound",
        "epsilon_upper_bound",
        "ratio",
    }
    assert audit["confidence"] == 0.95 and audit["epsilon_upper_bound"] > 0
    assert (run / "audit" / "audit.json").is_file()

    ledger = run / "ledger.jsonl"
    text = ledger.read_text()
    assert '"noise_multiplier":1.0' in text
    ledger.write_text(text.replace('"noise_multiplier":1.0', '"noise_multiplier":9.0'))
    code, out, err = cli("audit", str(run))
    assert code == 2 and "chain" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("q", "z", "steps", "sampling", "population", "message"),
    [
        (1.5, 1.0, 3, "poisson", None, "sampling-rate"),
        (0.1, 0.0, 3, "poisson", None, "noise-multiplier"),
        (0.1, 1.0, 0, "poisson", None, "steps"),
        (0.1, 1.0, 3, "fixed", None, "population"),
        (0.1, 1.0, 3, "fixed", 15, "rate"),  # 0.1 × 15 is not a whole cohort
        (0.1, 1.0, 3, "uniform", None, "sampling"),
    ],
)
def test_calculator_bad_input_in_process(
    q: float, z: float, steps: int, sampling: str, population: int | None, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        standalone_report(q, z, steps, 1e-5, "rdp", sampling, population)


def _dp_fedavg(sampling: dict[str, Any], rounds: int) -> dict[str, Any]:
    return {
        **TINY,
        "name": "calc_vs_run",
        "rounds": rounds,
        "clients": {"n_clients": 40, "weighting": "uniform", **sampling},
        "defense": {
            "client_transforms": [{"name": "clip", "clip_norm": 0.5}],
            "server_transforms": [
                {"name": "central_gaussian", "noise_multiplier": 1.0, "clip_norm": 0.5}
            ],
        },
    }


@pytest.mark.parametrize(
    ("sampling", "calculator"),
    [
        ({"sampling": "poisson", "sampling_rate": 0.25}, ("poisson", None)),
        ({"sampling": "fixed", "cohort_size": 10}, ("fixed", 40)),
    ],
)
def test_calculator_equals_the_runs_audited_epsilon(
    tmp_path: Path, sampling: dict[str, Any], calculator: tuple[str, int | None]
) -> None:
    """One meaning of noise_multiplier: the calculator given a run's own parameters answers
    the run's audited ε (on old main a fixed cohort audited 20.41 against the calculator's 6.69)."""
    run = tmp_path / "run"
    execute(parse_spec(_dp_fedavg(sampling, rounds=5)), run)
    report = run_report(run, 1e-5, "rdp")
    audited = report["epsilon"]
    scheme, population = calculator
    fixed = scheme == "fixed"
    assert report["neighbouring_relation"] == ("replace_one" if fixed else "add_remove")
    assert report["sensitivities"] == [1.0 if fixed else 0.5]  # 2C vs C, C = 0.5
    calc = standalone_report(0.25, 1.0, 5, 1e-5, "rdp", scheme, population)
    assert calc["epsilon"] == pytest.approx(audited, rel=1e-9)
    if scheme == "fixed":
        assert audited == pytest.approx(20.41, abs=0.01)


def test_calibrated_multiplier_in_a_config_meets_the_target(tmp_path: Path) -> None:
    """calibrate's answer, put into a fixed-cohort config, audits at (just under) the target."""
    code, out, err = cli(
        "calibrate", "--target-epsilon", "8", "--sampling-rate", "0.25", "--steps", "3",
        "--sampling", "fixed", "--population", "40", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["sensitivity"] == "2C"
    cfg = _dp_fedavg({"sampling": "fixed", "cohort_size": 10}, rounds=3)
    cfg["defense"]["server_transforms"][0]["noise_multiplier"] = result["noise_multiplier"]
    execute(parse_spec(cfg), tmp_path / "calibrated")
    audited = run_report(tmp_path / "calibrated", 1e-5, "rdp")["epsilon"]
    assert audited <= 8.0 and audited == pytest.approx(8.0, rel=5e-3)


def test_calibrate_with_every_accountant_meets_the_target_under_each() -> None:
    """``--accountant all`` is the smallest z whose ε is within the target under rdp, prv and
    pld alike (it used to be rdp's answer alone, whatever the others said)."""

    def calibrate(accountant: str) -> tuple[int, str, str]:
        return cli(
            "calibrate", "--target-epsilon", "8", "--sampling-rate", "0.2", "--steps", "20",
            "--accountant", accountant, "--json",
        )  # fmt: skip

    code, out, err = calibrate("all")
    assert code == 0, err
    result = json.loads(out)
    per = result["by_accountant"]
    assert set(per) == {"rdp", "prv", "pld"}
    assert result["noise_multiplier"] == max(v["noise_multiplier"] for v in per.values())
    assert result["accountant"] == max(per, key=lambda n: per[n]["noise_multiplier"])
    for name, values in per.items():  # the chosen z meets the target under every accountant
        assert values["epsilon_at_chosen"] <= 8.0 * (1 + 1e-3), name
        _, single, _ = calibrate(name)
        alone = json.loads(single)
        assert alone["noise_multiplier"] == pytest.approx(values["noise_multiplier"], rel=1e-9)


def test_audit_names_the_accountant_of_the_budget_verdict_and_the_round_table(
    tmp_path: Path,
) -> None:
    """The per-round table and the budget verdict say which accountant's ε they use (the
    verdict compares the headline ε, not the smallest of the accountants' bounds)."""
    cfg = _dp_fedavg({"sampling": "poisson", "sampling_rate": 0.25}, rounds=2)
    cfg["privacy"] = {"target_epsilon": 100.0}
    execute(parse_spec(cfg), tmp_path / "run")
    code, out, err = cli("audit", str(tmp_path / "run"), "--accountant", "all")
    assert code == 0, err
    flat = " ".join(out.replace("│", " ").split())
    eps = run_report(tmp_path / "run", 1e-5, "rdp")["epsilon"]
    assert f"budget: target ε = 100, rdp ε = {eps:.4g} → within budget" in flat
    assert "ε after each round (rdp)" in flat
    # central noise only: the per-client columns say why they are empty rather than "0"
    assert "No client has events of its own: every client's ε is the population's." in flat


def test_calibrate_with_every_accountant_skips_those_that_cannot_account_fixed_cohorts() -> None:
    """PLD and PRV refuse sampling without replacement: ``all`` answers with the accountants
    that can (RDP) and names the ones skipped, instead of failing."""
    code, out, err = cli(
        "calibrate", "--target-epsilon", "8", "--sampling-rate", "0.25", "--steps", "3",
        "--sampling", "fixed", "--population", "40", "--accountant", "all", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["accountant"] == "rdp" and set(result["by_accountant"]) == {"rdp"}
    assert set(result["skipped_accountants"]) == {"prv", "pld"}
    assert "sampling without replacement" in result["skipped_accountants"]["pld"]
    code, _, err = cli(
        "calibrate", "--target-epsilon", "8", "--sampling-rate", "0.25", "--steps", "3",
        "--sampling", "fixed", "--population", "40", "--accountant", "pld",
    )  # fmt: skip
    assert code == 2 and "cannot account this" in err  # asked for alone, it is still refused
