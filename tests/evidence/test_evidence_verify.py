"""``fedguard verify``: replay the run on CPU and compare records, ledger and model bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from benchmarks.faults.forgery import forge_drop, forge_noise, forge_spec_too
from fedguard.audit.ledger_checks import cross_check
from fedguard.audit.replay import draw_rounds
from fedguard.storage.run_dir import RunDirectory


def test_honest_run_verifies_bit_for_bit(honest_run: Path, cli) -> None:
    code, out, err = cli("verify", str(honest_run))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("evidence: seal ok") and lines[0].endswith(
        "verify matched (all rounds)"
    )
    assert "records: matched — 6 records identical" in out
    assert "ledger: matched — 6 ledger rounds identical" in out
    assert "model: matched — " in out and "identical bit for bit" in out
    assert "summary: matched — complete.json identical" in out


def test_an_edited_summary_differs_from_the_replay(run_copy: Path, cli) -> None:
    summary = json.loads((run_copy / "complete.json").read_text())
    summary["final_test_accuracy"] = 0.99
    (run_copy / "complete.json").write_text(json.dumps(summary))
    code, out, _ = cli("verify", str(run_copy))
    assert code == 1
    assert "summary: DIFFERED — complete.json: final_test_accuracy is 0.99 in the run" in out


def test_raised_noise_multiplier_differs_from_the_replay(run_copy: Path, cli) -> None:
    forge_noise(run_copy, 10.0)
    code, out, _ = cli("verify", str(run_copy))
    assert code == 1
    assert "verify DIFFERED" in out.splitlines()[0]
    assert (
        "ledger round 1: population.0.event.noise_multiplier is 10.0 in the run, 1.0 replayed"
        in out
    )


def test_dropped_rounds_differ_from_the_replay(run_copy: Path, cli) -> None:
    forge_drop(run_copy, keep=2)
    code, out, _ = cli("verify", str(run_copy))
    assert code == 1
    assert "ledger.jsonl holds 2 rounds; the replay ran 6" in out


def test_a_forgery_of_the_spec_itself_passes_cross_checks_but_not_verify(
    run_copy: Path, cli
) -> None:
    forge_spec_too(run_copy, 10.0)  # ledger and spec.yaml both claim z = 10
    assert cross_check(RunDirectory(run_copy)).passed
    code, out, _ = cli("verify", str(run_copy), "--json")
    assert code == 1
    result = json.loads(out)
    assert result["cross_checks"]["passed"] is True
    assert result["verify"]["matched"] is False


def test_edited_record_is_caught_only_by_verify(run_copy: Path, cli) -> None:
    lines = (run_copy / "rounds.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["test_accuracy"] = 0.99  # records carry no seal and nothing in the ledger implies them
    lines[0] = json.dumps(first, sort_keys=True)
    (run_copy / "rounds.jsonl").write_text("\n".join(lines) + "\n")
    assert cross_check(RunDirectory(run_copy)).passed
    code, out, _ = cli("verify", str(run_copy), "--rounds", "1", "--seed", "0")
    drawn = draw_rounds(6, 1, 0)
    assert code == 1  # round 1 is replayed whichever round is drawn (the prefix)
    assert f"rounds drawn (seed 0): {drawn[0]}" in out
    assert "rounds.jsonl round 1: test_accuracy is 0.99 in the run" in out


def test_partial_replay_draws_reproducibly_and_compares_the_prefix(honest_run: Path, cli) -> None:
    draws = {draw_rounds(6, 2, seed) for seed in range(20)}
    assert all(len(set(d)) == 2 and all(1 <= t <= 6 for t in d) for d in draws)
    assert len(draws) > 3  # the seed changes the draw
    assert draw_rounds(6, 2, 2) == draw_rounds(6, 2, 2) == (3, 4)
    code, out, err = cli("verify", str(honest_run), "--rounds", "2", "--seed", "2")
    assert code == 0, err
    assert out.splitlines()[0].endswith("verify matched (rounds 1–4 of 6)")
    assert "rounds drawn (seed 2): 3, 4;" in out
    assert "rounds 1–4 were replayed and compared" in out
    assert "records: matched — 4 records identical" in out
    assert "model: not compared: the replay stopped before the last round" in out


def test_usage_errors_are_exit_2(honest_run: Path, run_copy: Path, cli) -> None:
    for rounds in ("0", "7"):
        code, _, err = cli("verify", str(honest_run), "--rounds", rounds)
        assert code == 2
        assert "--rounds must be between 1 and the run's 6 rounds" in err
    spec = yaml.safe_load((run_copy / "spec.yaml").read_text())
    spec["privacy"]["secure_rng"] = True
    (run_copy / "spec.yaml").write_text(yaml.safe_dump(spec))
    from benchmarks.faults.forgery import reseal_spec_hash

    reseal_spec_hash(run_copy)  # past the damage check, to reach verify's own refusal
    code, _, err = cli("verify", str(run_copy))
    assert code == 2 and "cannot be replayed" in err


def test_an_interrupted_run_is_verified_as_far_as_it_went(run_copy: Path, cli) -> None:
    from benchmarks.faults.forgery import forge_drop

    forge_drop(run_copy, keep=3)  # what an interruption after round 3 leaves
    lines = (run_copy / "rounds.jsonl").read_text().splitlines(keepends=True)
    (run_copy / "rounds.jsonl").write_text("".join(lines[:3]))
    (run_copy / "complete.json").unlink()
    (run_copy / "model.pt").unlink()
    (run_copy / "state.pt").unlink()  # the last commit's sizes would say 6 rounds
    code, out, err = cli("verify", str(run_copy))
    assert code == 0, err
    assert "verify matched (all rounds)" in out.splitlines()[0]
    assert "records: matched — 3 records identical" in out
    assert "model: not compared: the run is interrupted" in out


def test_a_summary_written_before_the_test_size_fields_still_matches(run_copy: Path, cli) -> None:
    # runs written by earlier releases have no test_samples / n_classes in complete.json
    summary = json.loads((run_copy / "complete.json").read_text())
    assert summary["test_samples"] > 0 and summary["n_classes"] == 10
    for key in ("test_samples", "n_classes"):
        del summary[key]
    (run_copy / "complete.json").write_text(json.dumps(summary))
    code, out, _ = cli("verify", str(run_copy))
    assert "summary: matched — complete.json identical" in out, out
    assert code == 0, out


def test_an_edited_test_size_differs_from_the_replay(run_copy: Path, cli) -> None:
    summary = json.loads((run_copy / "complete.json").read_text())
    summary["test_samples"] = 10_000  # a narrower interval than the test set supports
    (run_copy / "complete.json").write_text(json.dumps(summary))
    code, out, _ = cli("verify", str(run_copy))
    assert code == 1
    assert "summary: DIFFERED — complete.json: test_samples is 10000 in the run" in out
