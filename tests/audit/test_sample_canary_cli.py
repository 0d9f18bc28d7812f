"""``fedguard audit --dp-sgd-canaries``: the record-level DP-SGD canary audit from the CLI.

Small, fast settings (5 epochs instead of 30; the library's own tests use the full defaults):
the JSON must reproduce :func:`sample_canary_audit` / :func:`gradient_canary_audit` called
directly, the lower bound must stay below the accountant's ε for a correct mechanism and exceed
it for a broken one (noise off, claim z = 3), and bad input must exit 2 with one sentence.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedguard.audit import (
    SampleCanaryConfig,
    gradient_canary_audit,
    one_run_audit,
    sample_canary_audit,
)
from fedguard.audit.sample_canaries import epsilon_upper_bounds
from fedguard.cli.main import app, main

FAST = ["audit", "--dp-sgd-canaries", "--epochs", "5"]
FIELDS = {
    "canary_kind", "trainer", "method", "epsilon_lower_bound", "epsilon_upper_bound",
    "upper_by_accountant", "ratio", "lower_exceeds_upper", "ceiling", "delta", "confidence",
    "n_canaries", "n_included", "noise_multiplier", "actual_noise_multiplier", "clip_norm",
    "epochs", "batch_size", "sampling_rate", "steps", "seed", "test_accuracy", "result",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke_json(*args: str) -> dict:
    result = CliRunner().invoke(app, [*FAST, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def entry_point(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """The console entry point ``main()`` (UserError → one sentence, exit 2) in CliRunner's
    isolation; returns the exit status and everything printed."""
    monkeypatch.setattr(sys, "argv", ["fedguard", *args])
    with CliRunner().isolation() as (_, _, output):
        with pytest.raises(SystemExit) as exit_info:
            main()
        return int(exit_info.value.code or 0), output.getvalue().decode()


def test_json_reproduces_the_library_audit() -> None:
    report = invoke_json()
    assert FIELDS <= report.keys()
    direct = sample_canary_audit(SampleCanaryConfig(epochs=5), seed=0)
    assert report["canary_kind"] == "mislabelled" and report["trainer"] == "opacus"
    assert report["method"] == direct.result.method == "one_run_sample_canaries"
    assert report["epsilon_lower_bound"] == direct.epsilon_lower
    assert report["epsilon_upper_bound"] == direct.epsilon_upper_opacus
    assert report["upper_by_accountant"]["rdp"] == direct.epsilon_upper_fedguard
    assert report["ceiling"] == direct.ceiling
    assert report["steps"] == direct.steps and report["sampling_rate"] == direct.sampling_rate
    assert report["n_included"] == int(direct.included.sum())
    assert (report["n_canaries"], report["delta"], report["confidence"]) == (200, 1e-5, 0.95)
    assert (report["noise_multiplier"], report["actual_noise_multiplier"]) == (1.0, 1.0)
    # A correct mechanism: the valid lower bound stays below the accountant's upper bound.
    assert report["epsilon_lower_bound"] <= report["epsilon_upper_bound"]
    assert report["lower_exceeds_upper"] is False
    assert report["ratio"] == pytest.approx(
        report["epsilon_lower_bound"] / report["epsilon_upper_bound"]
    )
    # The accountant's ε is Opacus' RDP for the realised (q, steps) of the claim.
    expected, _ = epsilon_upper_bounds(1.0, report["sampling_rate"], report["steps"], 1e-5)
    assert report["epsilon_upper_bound"] == expected


def test_broken_mechanism_is_a_contradiction_in_table_and_files(
    tmp_path: Path,
) -> None:
    """Dirac gradient canaries, claim z = 3 (ε ≈ 0.82) but no noise added: ε_LB ≈ 2.95 > 0.82."""
    correct = invoke_json("--canary-kind", "gradient", "--noise-multiplier", "3")
    assert correct["method"] == "one_run_gradient_canaries"
    assert correct["epsilon_lower_bound"] <= correct["epsilon_upper_bound"]
    assert correct["epsilon_upper_bound"] < correct["ceiling"]  # the claim is refutable

    out = tmp_path / "audit"
    args = [*FAST, "--canary-kind", "gradient", "--noise-multiplier", "3"]
    result = CliRunner().invoke(app, [*args, "--actual-noise-multiplier", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("ε lower bound (one-run, 95%)", "ε upper bound (Opacus RDP", "3 / 0",
                 "CONTRADICTION", "dp_sgd_canary_audit.json"):  # fmt: skip
        assert text in result.stdout
    written = json.loads((out / "dp_sgd_canary_audit.json").read_text())
    assert written["lower_exceeds_upper"] is True
    assert written["epsilon_lower_bound"] > written["epsilon_upper_bound"]
    assert written["epsilon_upper_bound"] == correct["epsilon_upper_bound"]  # same claim
    direct = gradient_canary_audit(
        SampleCanaryConfig(epochs=5, noise_multiplier=3.0, actual_noise_multiplier=0.0), seed=0
    )
    assert written["scores"] == direct.scores.tolist()
    assert written["included"] == direct.included.tolist()
    # The bound in the file follows from the stored scores and truth alone.
    again = one_run_audit(direct.scores, direct.included, confidence=0.95, delta=1e-5)
    assert written["epsilon_lower_bound"] == again.epsilon
    assert (out / "dp_sgd_canary_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "dp_sgd_canary_audit.json",
        "dp_sgd_canary_scores.png",
    ]  # atomic writes leave no temporary files behind


def test_fedguard_trainer_and_all_accountants() -> None:
    report = invoke_json("--trainer", "fedguard", "--accountant", "all", "--canaries", "100")
    assert report["trainer"] == "fedguard" and report["result"]["details"]["trainer"] == "fedguard"
    assert report["n_canaries"] == 100
    upper = report["upper_by_accountant"]
    assert set(upper) == {"opacus_rdp", "rdp", "prv", "pld"}
    assert upper["rdp"] == pytest.approx(upper["opacus_rdp"], rel=1e-6)
    # PRV/PLD are tighter than the RDP conversion but still upper bounds above the canaries' ε.
    assert report["epsilon_lower_bound"] <= min(upper["prv"], upper["pld"])
    assert max(upper["prv"], upper["pld"]) <= upper["rdp"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary-kind", "poison"], "--canary-kind must be 'mislabelled' or 'gradient'"),
        (["--trainer", "jax"], "--trainer must be 'opacus' or 'fedguard'"),
        (["--canary-kind", "gradient", "--trainer", "fedguard"], "--trainer must be 'opacus'"),
        (["--noise-multiplier", "0"], "--noise-multiplier must be a finite number > 0"),
        (["--actual-noise-multiplier", "-0.5"], "--actual-noise-multiplier must be a finite"),
        (["--clip-norm", "-1"], "--clip-norm must be a finite number > 0"),
        (["--clip-norm", "inf"], "--clip-norm must be a finite number > 0"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--canaries", "1"], "--canaries must be an integer from 2 to 1297"),
        (["--canary-kind", "gradient", "--canaries", "800"], "from 2 to 768"),
        (["--delta", "0.01"], "--delta must be in (0, 1/(2·canaries)]"),
        (["--confidence", "1.5"], "--confidence must be in (0, 1)"),
        (["--seed", "-1"], "--seed must be an integer from 0"),
        (["--accountant", "exact"], "--accountant must be one of rdp, prv, pld, all"),
        (["--empirical"], "--dp-sgd-canaries cannot be combined with --empirical"),
        (["--steps", "10"], "--dp-sgd-canaries cannot be combined with --steps"),
        (["--sampling", "fixed"], "--dp-sgd-canaries cannot be combined with --sampling"),
        (["."], "--dp-sgd-canaries cannot be combined with a RUN directory"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "audit"
    code, output = entry_point([*FAST, *args, "--out", str(out)], monkeypatch)
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(".")
    assert not out.exists()  # refused before anything ran or was written


def test_canary_option_without_the_flag_and_out_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = entry_point(["audit", "--clip-norm", "1"], monkeypatch)
    assert code == 2 and "--clip-norm is only used with --dp-sgd-canaries." in output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, output = entry_point([*FAST, "--out", str(a_file)], monkeypatch)
    assert code == 2 and "--out must be a directory" in output
    assert a_file.read_text() == "x"
