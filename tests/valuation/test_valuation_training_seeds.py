"""Values over training seeds: ``training_seed`` changes training only, and ``contrib
--training-seeds K`` reports the mean and the t-interval over K retrained runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from fedguard.cli.contrib_command import contrib_command
from fedguard.config import parse_spec
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation, execute
from fedguard.valuation.base import Scores
from fedguard.valuation.training_seeds import SEEDS_DIR, combine_over_seeds

CONFIG = {
    "name": "seeds-test",
    "seed": 3,
    "rounds": 3,
    "save_updates": True,
    "clients": {"n_clients": 4},
    "model": "logreg",
    "attack": {"n_malicious": 1, "data_attack": {"name": "random_labels"}},
}


def test_unset_training_seed_keeps_every_earlier_hash() -> None:
    plain = parse_spec(CONFIG)
    assert "training_seed" not in plain.canonical()
    assert parse_spec({**CONFIG, "training_seed": None}).spec_hash() == plain.spec_hash()
    assert parse_spec({**CONFIG, "training_seed": 9}).spec_hash() != plain.spec_hash()
    with pytest.raises(ConfigError, match="training_seed"):
        parse_spec({**CONFIG, "training_seed": -1})


def test_training_seed_changes_training_but_not_data_or_roles() -> None:
    torch.set_num_threads(1)
    base = build_simulation(parse_spec(CONFIG))
    same = build_simulation(parse_spec({**CONFIG, "training_seed": 3}))
    other = build_simulation(parse_spec({**CONFIG, "training_seed": 4}))
    assert (base.malicious, base.free_riders) == (other.malicious, other.free_riders)
    assert torch.equal(base.clients.features, other.clients.features)  # same partition
    assert torch.equal(base.clients.labels, other.clients.labels)  # same poisoned labels
    states = [sim.initial_state() for sim in (base, same, other)]
    assert torch.equal(states[0].params, states[1].params)  # training_seed = seed: identical
    assert not torch.equal(states[0].params, states[2].params)  # another initialisation
    pairs = zip((base, same), states[:2], strict=True)
    after = [sim.run_round(state)[0].params for sim, state in pairs]
    assert torch.equal(after[0], after[1])


def _scores(values: list[float], se: float) -> Scores:
    v = torch.tensor(values, dtype=torch.float64)
    return Scores("exact", v, torch.full_like(v, se), v - 1, v + 1, 10, 12)


def test_combine_over_seeds_is_the_t_interval_of_the_runs() -> None:
    per_seed = [_scores([1.0, 2.0], 0.1), _scores([3.0, 2.0], 0.2), _scores([2.0, 5.0], 0.0)]
    combined = combine_over_seeds(per_seed, [0, 1, 2])
    torch.testing.assert_close(combined.values, torch.tensor([2.0, 3.0], dtype=torch.float64))
    se = torch.tensor([1.0, math.sqrt(3.0)], dtype=torch.float64) / math.sqrt(3)
    torch.testing.assert_close(combined.std_errors, se)
    t = stats.t.ppf(0.975, df=2)
    torch.testing.assert_close(combined.upper - combined.values, t * se)
    assert combined.n_evaluations == 30 and combined.n_queries == 36
    assert combined.info["per_seed_values"] == [[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("seeds") / "run"
    execute(parse_spec(CONFIG), out)
    return out


def test_contrib_over_training_seeds(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert contrib_command(run_dir, "exact", None, "loss", True) == 0
    single = json.loads(capsys.readouterr().out)
    assert contrib_command(run_dir, "exact", None, "loss", True, training_seeds=3) == 0
    payload = json.loads(capsys.readouterr().out)
    info = payload["scores"]["info"]
    assert info["training_seeds"] == [3, 4, 5] and len(info["per_seed_values"]) == 3
    assert info["per_seed_values"][0] == pytest.approx(single["scores"]["values"])  # run itself
    per_seed = torch.tensor(info["per_seed_values"])
    assert payload["scores"]["values"] == pytest.approx(per_seed.mean(dim=0).tolist())
    assert abs(payload["audit"]["efficiency_gap"]) < 1e-9  # exact values, mean target
    assert any("over 3 training seeds" in note for note in payload["notes"])
    seeds_dir = run_dir / SEEDS_DIR
    made = sorted(p.name for p in seeds_dir.iterdir())
    assert made == ["training_seed_4", "training_seed_5"]
    stamps = {p: (p / "model.pt").stat().st_mtime_ns for p in seeds_dir.iterdir()}
    assert contrib_command(run_dir, "exact", None, "loss", True, training_seeds=3) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["scores"]["values"] == payload["scores"]["values"]
    assert {p: (p / "model.pt").stat().st_mtime_ns for p in seeds_dir.iterdir()} == stamps


def test_training_seeds_out_of_range_is_refused(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="training-seeds must be an integer in 1..100; got 0"):
        contrib_command(run_dir, "exact", None, "loss", True, training_seeds=0)
