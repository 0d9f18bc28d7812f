"""``fedguard audit RUN --empirical`` on a run whose privacy unit is the user (issue 22 item 2):
canary users spread over silos through the run's own ULDP-AVG. The lower bound stays below the
ledger's user-level ε, and exceeds a claimed ε ≤ 2 when the mechanism's noise is switched off or
its cross-silo weights are missing; asking user canaries of another unit is a usage error."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import fedguard.defenses.user_level_dp.uldp_avg as uldp_module
from fedguard.audit.user_empirical import user_level_empirical_audit
from fedguard.cli.audit_command import canary_unit_for
from fedguard.cli.main import main
from fedguard.config import parse_spec
from fedguard.errors import ConfigError, UserError
from fedguard.launch import execute
from fedguard.privacy.accountants.analytic import gaussian_epsilon

DELTA = 1e-5
#: z = 2 on one unsampled round: user-level ε(1e-5) = 1.99 (a claim ≤ 2)
CLAIM = 2.0


def _spec(rounds: int = 1, **transform: Any) -> Any:
    """A ULDP-AVG run over 5 silos (60 users), or with ``dp_sgd`` a record-level run."""
    if transform.get("name") == "dp_sgd":
        dataset: Any = "digits"
    else:
        dataset = {"name": "digits_users", "n_users": 60}
        transform = {"name": "uldp_avg", "noise_multiplier": CLAIM, **transform}
    return parse_spec(
        {
            "name": "uldp_audit",
            "rounds": rounds,
            "seed": 0,
            "data": {"dataset": dataset, "partition": "iid"},
            "model": {"name": "mlp", "hidden": [64]},  # d = 4,810
            "clients": {"n_clients": 5, "weighting": "uniform", "sampling": "all"},
            "training": {"batch_size": 16, "learning_rate": 0.1, "local_epochs": 1},
            "defense": {"client_transforms": [{"clip_norm": 0.5, **transform}]},
            "privacy": {"delta": DELTA},
        }
    )


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uldp") / "run"
    execute(_spec(), run)
    return run


@pytest.fixture(scope="module")
def record_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DP-SGD in local training: the ledger's unit is one record."""
    run = tmp_path_factory.mktemp("dpsgd") / "run"
    execute(_spec(name="dp_sgd", noise_multiplier=1.0), run)
    return run


def _zero_noise(shape: Any, std: float, gen: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=device)


def test_correct_mechanism_stays_below_its_claim(user_run: Path) -> None:
    result = user_level_empirical_audit(user_run, 1000)
    claim = gaussian_epsilon(1 / CLAIM, DELTA)
    assert claim <= 2.0
    assert result["epsilon_upper"] == pytest.approx(claim, rel=1e-6)
    assert set(result["upper_by_accountant"]) == {"rdp", "pld"}
    assert 0.0 <= result["epsilon_lower"] < result["epsilon_upper"]
    assert result["lower_exceeds_upper"] is False
    # the design can see a broken mechanism: without noise the same canaries exceed the claim
    assert result["baseline_noise_off"] > result["epsilon_upper"]
    assert result["unit"] == "user" and result["rounds"] == 1 and result["silos_per_canary"] == 3


def test_noise_switched_off_is_caught(user_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit drives the run's own mechanism: break its noise and the bound exceeds ε ≤ 2."""
    monkeypatch.setattr(uldp_module, "gaussian_noise", _zero_noise)
    result = user_level_empirical_audit(user_run, 1000)
    assert result["epsilon_upper"] <= 2.0
    assert result["epsilon_lower"] > 2.0 and result["lower_exceeds_upper"] is True
    assert result["epsilon_lower"] == pytest.approx(result["baseline_noise_off"], rel=1e-12)


def test_missing_cross_silo_weights_are_caught(
    user_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mechanism whose silos each bound only their own copy of a user (w = 1 per silo): a
    canary in all 5 silos moves the sum by 5C while the ledger claims C."""
    monkeypatch.setattr(
        uldp_module, "user_weights", lambda user, count, weighting: torch.ones(len(user)).double()
    )
    result = user_level_empirical_audit(user_run, 1000, silos_per_canary=5)
    assert result["lower_exceeds_upper"] is True


@pytest.mark.parametrize(
    "transform",
    [
        {"user_sampling_rate": 0.5, "max_records_per_user_per_silo": 2},
        {
            "sampling": "example",
            "example_sampling_rate": 0.3,
            "max_records_per_user": 4,
            "max_records_per_user_per_silo": 2,
        },
    ],
)
def test_sampled_and_capped_runs_stay_below_their_claim(
    tmp_path: Path, transform: dict[str, Any]
) -> None:
    run = tmp_path / "run"
    execute(_spec(rounds=3, noise_multiplier=1.0, **transform), run)
    result = user_level_empirical_audit(run, 500, silos_per_canary=4)
    assert result["rounds"] == 3
    assert 0.0 <= result["epsilon_lower"] < result["epsilon_upper"]


def test_refusals(user_run: Path, record_run: Path) -> None:
    with pytest.raises(ConfigError, match="silos_per_canary"):
        user_level_empirical_audit(user_run, 100, silos_per_canary=6)
    with pytest.raises(ConfigError, match="privacy unit is 'user'.*record level"):
        user_level_empirical_audit(record_run, 100)
    with pytest.raises(UserError, match="--canary-unit user needs a run whose privacy unit"):
        canary_unit_for(record_run, "user")
    with pytest.raises(UserError, match="--canary-unit client does not apply"):
        canary_unit_for(user_run, "client")
    with pytest.raises(UserError, match="--canary-unit must be one of"):
        canary_unit_for(user_run, "silo")
    assert canary_unit_for(user_run, "auto") == "user"
    assert canary_unit_for(record_run, "auto") == "client"


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """The console entry point ``main()`` in-process (UserError → one sentence, exit 2); the
    exit status and everything printed."""
    monkeypatch.setattr(sys, "argv", ["fedguard", *args])
    with CliRunner().isolation() as (_, _, output):
        with pytest.raises(SystemExit) as exit_info:
            main()
        return int(exit_info.value.code or 0), output.getvalue().decode()


def test_cli_prints_the_user_level_bound_beside_the_ledger(
    user_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _cli(monkeypatch, "audit", str(user_run), "--empirical", "--canaries", "200")
    assert code == 0, out
    assert "user level (unit: one user's records in every silo" in out
    assert "empirical ε lower bound" in out and "baseline: the same canaries" in out
    written = json.loads((user_run / "audit.json").read_text())
    assert written["unit"] == "user" and written["n_canaries"] == 200
    assert written["epsilon_lower_bound"] < written["epsilon_upper_bound"] <= 2.0
    assert math.isfinite(written["baseline_noise_off"])
    assert (user_run / "audit" / "canary_truth.json").is_file()


@pytest.mark.parametrize(
    ("which", "flags", "message"),
    [
        (
            "record",
            ["--empirical", "--canary-unit", "user"],
            "--canary-unit user needs a run whose privacy unit is 'user' (ULDP-AVG);",
        ),
        ("user", ["--empirical", "--silos-per-canary", "9"], "silos_per_canary"),
        ("user", ["--canary-unit", "user"], "apply to the empirical audit of a run"),
    ],
)
def test_cli_usage_error_is_one_sentence_and_exit_2(
    user_run: Path,
    record_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    flags: list[str],
    message: str,
) -> None:
    run = user_run if which == "user" else record_run
    before = sorted(p.name for p in run.iterdir())
    code, out = _cli(monkeypatch, "audit", str(run), *flags)
    assert code == 2, out
    error = out[out.index("error:") :]
    assert message in " ".join(error.split()) and "Traceback" not in out
    assert error.count("error:") == 1 and error.rstrip().endswith(".")
    assert sorted(p.name for p in run.iterdir()) == before  # nothing half-written
