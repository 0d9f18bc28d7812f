"""``fedguard audit`` / ``fedguard calibrate`` through the console entry point (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedguard.cli.audit_command import run_report, standalone_report
from fedguard.config import load_spec
from fedguard.core.runner import execute
from fedguard.errors import UserError

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
    code, out, err = cli(
        "audit", "--sampling-rate", "0.01", "--noise-multiplier", "1", "--steps", "10000",
        "--sampling", "fixed", "--population", "1000", "--accountant", "all", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["sampling"] == "without_replacement"
    assert report["epsilon"] == pytest.approx(13.15, abs=0.02)  # vs 6.71 under Poisson
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
        (["--noise-multiplier", "1", "--sampling-rate", "0", "--steps", "3"], "sampling-rate"),
        (["--noise-multiplier", "1", "--sampling-rate", "0.1", "--steps", "3", "--delta", "1"],
         "delta"),
    ],
)  # fmt: skip
def test_bad_input_is_one_sentence_and_exit_2(args: list[str], message: str) -> None:
    code, _out, err = cli("audit", *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


def test_run_then_audit_and_stop_at_epsilon(tmp_path: Path) -> None:
    run = tmp_path / "run"
    execute(load_spec(ROOT / "configs/dp_fedavg.yaml", rounds=3), run)  # in-process: faster
    code, out, err = cli("audit", str(run), "--accountant", "all", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accountant"] == "rdp" and report["epsilon"] > 0
    assert len(report["epsilon_by_round"]) == 3
    eps = [e for _, e in report["epsilon_by_round"]]
    assert eps == sorted(eps)
    # the ledger's ε equals the calculator's for the same (q, z/1, T): Poisson, add/remove
    code, out2, _ = cli(
        "audit", "--sampling-rate", "0.2", "--noise-multiplier", "1.0", "--steps", "3", "--json"
    )
    assert report["epsilon"] == pytest.approx(json.loads(out2)["epsilon"], rel=1e-9)
    pld = report["levels"]["client"]["accountants"]["pld"]["epsilon"]
    assert pld <= report["epsilon"]
    assert report["budget"] == {"target_epsilon": 8.0, "within_budget": True}
    assert report["noise_source"].startswith("seeded")
    assert (run / "privacy_epsilon.png").stat().st_size > 1000
    code, out, err = cli("audit", str(run))
    assert code == 0 and "within budget" in out, err

    # a budget that the second round exceeds stops the run
    first = report["epsilon_by_round"][0][1]
    second = report["epsilon_by_round"][1][1]
    cfg = tmp_path / "stop.yaml"
    text = (ROOT / "configs/dp_fedavg.yaml").read_text()
    cfg.write_text(text.replace("target_epsilon: 8.0", f"stop_at_epsilon: {(first + second) / 2}"))
    execute(load_spec(cfg), tmp_path / "stopped")
    stopped = run_report(tmp_path / "stopped", None, "rdp")
    assert stopped["rounds_recorded"] == 2 and stopped["stopped_early"]

    # a tampered ledger is refused with one sentence
    ledger = run / "ledger.json"
    ledger.write_text(
        ledger.read_text().replace('"noise_multiplier": 1.0', '"noise_multiplier": 9.0')
    )
    code, out, err = cli("audit", str(run))
    assert code == 2 and "checksum" in err and "Traceback" not in err


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
