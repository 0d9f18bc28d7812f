"""A DP run's report: ε per accountant with why they differ, and what the canary audit could
and could not have shown (its ceiling with the guess grid, not the single-test one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fedguard.config import parse_spec
from fedguard.launch import execute
from fedguard.privacy.audit.one_run import default_guess_grid, max_certifiable_epsilon
from fedguard.report.accountants import refutation_sentence
from fedguard.report.builder import build_report


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dp") / "r"
    spec = parse_spec(
        {
            "name": "dp-report",
            "rounds": 3,
            "data": {"dataset": "digits", "partition": "iid"},
            "model": "logreg",
            "clients": {"n_clients": 10, "weighting": "uniform"},
            "defense": {
                "aggregator": "mean",
                "client_transforms": [{"name": "clip", "clip_norm": 1.0}],
                "server_transforms": [
                    {"name": "central_gaussian", "clip_norm": 1.0, "noise_multiplier": 1.0}
                ],
            },
        }
    )
    execute(spec, out)
    return out


def test_the_guess_grid_ceiling_at_1000_canaries_is_5_15_not_5_81() -> None:
    grid = default_guess_grid(1000)
    largest = max(plus + minus for plus, minus in grid)
    ceiling = max_certifiable_epsilon(1000, n_guesses=largest, n_hypotheses=len(grid))
    assert ceiling == pytest.approx(5.15, abs=0.005)
    assert max_certifiable_epsilon(1000) == pytest.approx(5.81, abs=0.005)  # single test


def test_dp_report_gives_every_accountant_and_the_audit_ceiling(dp_run: Path) -> None:
    html = build_report(dp_run)
    assert "ε per accountant" in html
    for name in ("rdp", "pld", "prv"):
        assert re.search(rf"<td>{name}</td><td[^>]*>\d", html), name
    assert "Rényi DP" in html and "privacy-loss distribution" in html
    assert "The accountants agree within" in html
    # ε over rounds drawn from zero, every accountant
    assert "ε over rounds for every accountant, from zero" in html
    # no audit yet: nothing about canaries
    assert "Empirical audit" not in html
    grid = default_guess_grid(1000)
    audit = {
        "method": "one_run",
        "n_canaries": 1000,
        "confidence": 0.95,
        "delta": 0.0,
        "epsilon_lower": 0.14,
        "epsilon_upper": 6.62,
        "upper_source": "pld",
        "ceiling": max_certifiable_epsilon(1000, n_guesses=1000, n_hypotheses=len(grid)),
        "ceiling_all_guesses": max_certifiable_epsilon(1000),
        "ratio": 0.14 / 6.62,
    }
    (dp_run / "audit").mkdir(exist_ok=True)
    (dp_run / "audit" / "audit.json").write_text(json.dumps(audit))
    try:
        html = build_report(dp_run)
    finally:
        (dp_run / "audit" / "audit.json").unlink()
    assert "Empirical audit" in html and "<td>1000</td>" in html
    assert "5.15" in html and "could not have refuted the claim" in html
    summary = html[html.index('id="summary"') : html.index('id="setup"')]
    assert (
        "can certify at most ε = 5.15, below 6.62, the smallest of the accountants&#x27; bounds"
        in summary
    )


def test_refutation_sentences() -> None:
    assert "REFUTES" in refutation_sentence(8.0, 9.0, 7.5)
    assert "could not have refuted" in refutation_sentence(0.1, 2.81, 6.6)
    assert "could have refuted the claim" in refutation_sentence(0.5, 9.0, 2.0)


def test_run_report_leads_with_a_summary(dp_run: Path) -> None:
    html = build_report(dp_run)
    assert html.index('id="summary"') < html.index('id="setup"') < html.index('id="privacy"')
    summary = html[html.index('id="summary"') : html.index('id="setup"')]
    assert "Final test accuracy" in summary and "Trust model: central" in summary
    assert re.search(r"Privacy: ε = [\d.]+ at δ = 1e-05 \(rdp accountant\), client-level", summary)
    assert "Setup: digits data, iid partition, logreg model, 10 clients" in summary
    setup = html[html.index('id="setup"') : html.index('id="training"')]
    assert "spec hash" in setup and "fedguard version" in setup


def test_show_of_a_dp_run_orders_the_summary_by_meaning_and_states_epsilon(
    dp_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedguard.cli.show_command import show_command

    show_command(dp_run)
    text = capsys.readouterr().out
    summary = text[text.index("Run summary") :]
    keys = ["name", "spec hash", "final test accuracy", "privacy epsilon", "wall seconds"]
    positions = [summary.index(k) for k in keys]
    assert positions == sorted(positions), positions
    assert re.search(r"ε = \d+(\.\d+)? at δ = 1e-05 \(rdp accountant, client-level\)", summary)
    # a DP run names its noise source (seeded: reproducible from the seed)
    assert "seeded simulation" in summary and "no DP mechanism" not in summary


def test_the_privacy_finding_reads_as_one_plain_sentence() -> None:
    from fedguard.report.privacy_section import privacy_finding

    line = privacy_finding(
        {
            "epsilon": 7.52,
            "delta": 1e-5,
            "accountant": "rdp",
            "unit": "client (one client's entire dataset, added or removed)",
            "neighbouring_relation": "add/remove one",
            "trust_model": "central (a trusted server adds the noise to the aggregate)",
        }
    )
    assert line == (
        "Privacy: ε = 7.52 at δ = 1e-05 (rdp accountant), client-level: one client's entire "
        "dataset, added or removed, add/remove one neighbours. Trust model: central — a trusted "
        "server adds the noise to the aggregate."
    )


def test_show_of_a_user_level_run_says_epsilon_protects_a_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ε of a user-level DP run protects a user, not a client: the summary said neither."""
    from fedguard.cli.show_command import show_command
    from fedguard.config import load_spec

    root = Path(__file__).resolve().parents[2]
    spec = load_spec(root / "configs" / "uldp_avg.yaml").with_overrides(rounds=2)
    execute(spec, tmp_path / "run")
    show_command(tmp_path / "run")
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert re.search(r"ε = [\d.]+ at δ = [\d.e-]+ \(rdp accountant, user-level\)", text)
