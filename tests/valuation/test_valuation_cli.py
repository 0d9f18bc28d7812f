"""Phase 2: utilities from a real run directory and the ``contrib`` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from fedguard.cli.contrib_command import contrib_command, contrib_or_exit, default_method
from fedguard.config import parse_spec
from fedguard.errors import ConfigError, UserError
from fedguard.launch import execute
from fedguard.valuation.reconstruction import MultiRoundReconstruction, RoundUpdates
from fedguard.valuation.utilities import build_game, duplicate_pairs, load_run


def _spec(save_updates: bool):  # type: ignore[no-untyped-def]
    return parse_spec(
        {
            "name": "contrib-test",
            "seed": 1,
            "rounds": 3,
            "save_updates": save_updates,
            "clients": {"n_clients": 4},
            "model": "logreg",
        }
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "with_updates"
    execute(_spec(True), out)
    return out


def test_reconstructions_reproduce_the_run(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert len(run.rounds) == 3 and run.split == "validation"
    final = torch.load(run_dir / "model.pt", weights_only=True)["params"]
    acc, loss = run.model.evaluate(final, run.features, run.labels)
    grand = (1 << run.n_clients) - 1
    one_round = build_game(run, "reconstruct-one-round", "accuracy")
    assert one_round.utility(grand) == pytest.approx(acc)  # type: ignore[union-attr]
    multi = build_game(run, "reconstruct-multi-round", "loss")
    assert isinstance(multi, MultiRoundReconstruction)
    assert multi.round_utility(2, grand) == pytest.approx(-loss, rel=1e-5)
    initial_acc, _ = run.model.evaluate(run.rounds[0].global_params, run.features, run.labels)
    assert multi.total().n_players == 4
    assert one_round.utility(0) == pytest.approx(initial_acc)  # type: ignore[union-attr]


def test_retrain_grand_coalition_is_the_run_itself(run_dir: Path) -> None:
    run = load_run(run_dir)
    game = build_game(run, "retrain", "accuracy")
    final = torch.load(run_dir / "model.pt", weights_only=True)["params"]
    assert torch.equal(game.final_params(0b1111), final)  # type: ignore[union-attr]
    assert torch.equal(game.final_params(0), run.rounds[0].global_params)  # type: ignore[union-attr]
    single = game.final_params(0b0100)  # type: ignore[union-attr]
    assert not torch.equal(single, final)
    acc, _ = run.model.evaluate(final, run.features, run.labels)
    assert game.utility(0b1111) == pytest.approx(acc)  # type: ignore[union-attr]


def test_contrib_writes_table_files(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert contrib_command(run_dir, None, None, "accuracy", False) == 0
    text = capsys.readouterr().out
    assert "client" in text and "efficiency gap" in text
    with open(run_dir / "contrib_exact_accuracy.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["client"]) for r in table] == [0, 1, 2, 3]
    assert sorted(int(r["rank"]) for r in table) == [1, 2, 3, 4]
    payload = json.loads((run_dir / "contrib_exact_accuracy.json").read_text())
    values = payload["scores"]["values"]
    assert sum(values) == pytest.approx(payload["audit"]["total_gain"], abs=1e-9)
    assert (run_dir / "contrib_exact_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    latest = (run_dir / "contributions.csv").read_text()
    assert latest == (run_dir / "contrib_exact_accuracy.csv").read_text()


def test_contrib_json_mode(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert contrib_command(run_dir, "permutation", 40, "loss", True) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "permutation" and payload["scores"]["n_evaluations"] <= 40
    assert len(payload["clients"]) == 4


def test_contrib_bad_input(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least the number of clients"):
        contrib_command(run_dir, "permutation", 3, "accuracy", False)
    with pytest.raises(ConfigError, match="does not take a budget"):
        contrib_command(run_dir, "exact", 100, "accuracy", False)
    with pytest.raises(ConfigError, match="unknown method"):
        contrib_command(run_dir, "shapely", None, "accuracy", False)
    with pytest.raises(ConfigError, match="utility must be one of"):
        contrib_command(run_dir, "exact", None, "f1", False)
    with pytest.raises(UserError, match="not a fedguard run directory"):
        contrib_command(tmp_path, None, None, "accuracy", False)
    no_updates = tmp_path / "no_updates"
    execute(_spec(False).with_overrides(rounds=1), no_updates)
    with pytest.raises(UserError, match="needs the run's saved client updates"):
        contrib_command(no_updates, "exact", None, "accuracy", False)
    assert contrib_or_exit(no_updates, "exact", None, "accuracy", False) == 2
    assert not list(no_updates.glob("contrib_*"))


def test_default_method_follows_issue_limits() -> None:
    assert default_method(12, "reconstruct-multi-round") == "exact"
    assert default_method(13, "reconstruct-multi-round") == "stratified"
    assert default_method(9, "retrain") == "stratified"


def test_duplicate_pairs_found_from_identical_updates() -> None:
    g = torch.Generator().manual_seed(0)
    rounds = []
    for _ in range(2):
        d = torch.randn(4, 6, generator=g)
        d[3] = d[1]
        rounds.append(RoundUpdates(torch.zeros(6), torch.arange(4), d, torch.ones(4)))
    assert duplicate_pairs(tuple(rounds)) == [(1, 3)]


def test_identical_updates_with_different_weights_are_not_symmetric_players() -> None:
    # two free-riders sending zero from 30 and 45 samples: the heavier one dilutes a coalition's
    # FedAvg mean more, so exact Shapley values differ and no symmetry is to be checked
    g = torch.Generator().manual_seed(0)
    rounds = []
    for _ in range(2):
        d = torch.randn(4, 6, generator=g)
        d[0] = d[3] = 0.0
        counts = torch.tensor([30.0, 40.0, 40.0, 45.0])
        rounds.append(RoundUpdates(torch.zeros(6), torch.arange(4), d, counts))
    assert duplicate_pairs(tuple(rounds)) == []
    for r in rounds:
        r.num_samples[3] = 30.0
    assert duplicate_pairs(tuple(rounds)) == [(0, 3)]


def test_surrogate_notes_name_what_reconstruction_approximates() -> None:
    from types import SimpleNamespace

    from fedguard.cli.contrib_command import surrogate_notes

    spec = parse_spec(
        {"defense": {"aggregator": "median"}, "server": {"optimizer": "adam", "learning_rate": 0.1}}
    )
    run = SimpleNamespace(spec=spec)
    notes = surrogate_notes(run, "reconstruct-multi-round")  # type: ignore[arg-type]
    assert any("'median'" in n for n in notes) and any("'adam'" in n for n in notes)
    assert surrogate_notes(run, "retrain") == []  # type: ignore[arg-type]
    plain = SimpleNamespace(spec=_spec(True))
    assert surrogate_notes(plain, "reconstruct-one-round") == []  # type: ignore[arg-type]


def test_contrib_compare_reports_rank_agreement(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert contrib_command(run_dir, "exact", None, "loss", True, compare=["permutation"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (agreement,) = payload["audit"]["agreements"]
    assert (agreement["method_a"], agreement["method_b"]) == ("exact", "permutation")
    # 4 clients, permutation at 32n sees every coalition: the same ranking
    assert agreement["spearman"] == pytest.approx(1.0) and agreement["kendall"] == pytest.approx(
        1.0
    )
    with pytest.raises(ConfigError, match="unknown method 'nosuch'"):
        contrib_command(run_dir, "exact", None, "loss", True, compare=["nosuch"])
