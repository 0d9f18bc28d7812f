"""End-to-end runs through the CLI: writing, resuming, bad input."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from fedguard.cli.main import app
from fedguard.config import load_spec, parse_spec
from fedguard.errors import ConfigError
from fedguard.launch import execute

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "name": "small",
    "rounds": 3,
    "data": {"dataset": "digits", "partition": {"name": "dirichlet", "alpha": 0.5}},
    "model": {"name": "mlp", "hidden": [16]},
    "clients": {"n_clients": 10},
    "training": {"batch_size": 16, "learning_rate": 0.1},
}


def _write(tmp_path: Path, cfg: dict, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _invoke(args: list[str]):
    from fedguard.cli import main as cli_main

    runner = CliRunner()
    return runner.invoke(app, args, catch_exceptions=True), cli_main


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run the console entry point (with its error handling) and return (exit code, output)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "fedguard.cli.main", *args], capture_output=True, text=True, cwd=ROOT
    )
    return proc.returncode, proc.stdout + proc.stderr


class _Interrupted(Exception):
    """The process dies right after a round is committed."""


def _interrupt_after(spec, out: Path, rounds: int) -> Path:
    """Run ``spec`` into ``out`` and die once ``rounds`` rounds are committed."""

    def stop(done: int, total: int, record: dict) -> None:
        if done == rounds:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        execute(spec, out, progress=stop)
    assert not (out / "complete.json").exists()
    return out


def test_run_writes_directory(tmp_path: Path) -> None:
    cfg = _write(tmp_path, {**SMALL, "save_updates": True})
    code, output = run_cli(["run", str(cfg), "--out", str(tmp_path / "run")])
    assert code == 0, output
    run = tmp_path / "run"
    for f in ("spec.yaml", "rounds.jsonl", "model.pt", "env.json", "ledger.jsonl", "complete.json"):
        assert (run / f).is_file(), f
    assert len((run / "rounds.jsonl").read_text().splitlines()) == 3
    model = torch.load(run / "model.pt", weights_only=True)
    assert model["params"].ndim == 1
    upd = run / "updates"
    assert stat.S_IMODE(upd.stat().st_mode) == 0o700
    files = sorted(upd.glob("round_*.pt"))
    assert len(files) == 3 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    saved = torch.load(files[0], weights_only=True)
    assert saved["deltas"].shape == (10, model["params"].numel())
    assert "owner-only" in output
    code, shown = run_cli(["show", str(run), "--partition"])
    assert code == 0 and "final test accuracy" in shown and "label histogram" in shown
    flat = " ".join(shown.replace("│", " ").split())  # the table wraps long values
    # no DP mechanism ran: the noise-source row says so instead of naming a source
    assert "dp noise none: no DP mechanism ran" in flat
    assert "seeded simulation" not in flat
    # the accuracy with its 95% interval over the test set and the chance baseline
    summary = json.loads((run / "complete.json").read_text())
    assert summary["test_samples"] > 0 and summary["n_classes"] == 10
    assert f"over {summary['test_samples']} test samples (Wilson); chance 0.100" in flat


def test_resume_matches_uninterrupted(tmp_path: Path) -> None:
    spec = parse_spec(
        {**SMALL, "rounds": 4, "clients": {"n_clients": 10, "sampling": "fixed", "cohort_size": 5}}
    )
    execute(spec, tmp_path / "full")
    _interrupt_after(spec, tmp_path / "part", rounds=2)  # dies before round 3
    code, output = run_cli(["run", "--resume", str(tmp_path / "part")])
    assert code == 0, output
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["params"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["params"]
    assert torch.equal(a, b)
    rounds = [
        json.loads(l)["round"]
        for l in (tmp_path / "part" / "rounds.jsonl").read_text().splitlines()
    ]
    assert rounds == [1, 2, 3, 4]


def test_same_seed_same_result_and_seed_matters() -> None:
    spec = parse_spec({**SMALL, "rounds": 2})
    a = execute(spec).simulation
    r1 = execute(spec)
    r2 = execute(spec)
    r3 = execute(spec.with_overrides(seed=1))
    assert r1.records[-1]["test_accuracy"] == r2.records[-1]["test_accuracy"]
    assert r1.records[-1]["test_loss"] != r3.records[-1]["test_loss"]
    assert a is not None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"data": {"dataset": "imagenet"}}, "unknown dataset 'imagenet'; valid names:"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"clients": {"n_clients": 5000}}, "must not exceed the number of training samples"),
        ({"data": {"partition": {"name": "dirichlet", "alpha": 0}}}, "partition.alpha must be"),
        ({"rounds": -1}, "rounds"),
        ({"trainig": {}}, "unknown key 'trainig'"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate"),
        ({"device": "cuda"}, "cuda"),
        ({"defense": {"aggregator": "no_such_rule"}}, "unknown aggregator 'no_such_rule'"),
    ],
)
def test_bad_input_exits_2_without_directory(tmp_path: Path, patch: dict, message: str) -> None:
    if patch == {"device": "cuda"} and torch.cuda.is_available():
        pytest.skip("a GPU is present, so cuda is valid here")
    cfg = {**SMALL, **patch}
    out = tmp_path / "run"
    code, output = run_cli(["run", str(_write(tmp_path, cfg)), "--out", str(out)])
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output
    assert not out.exists()


def test_an_unknown_key_names_its_section_keys_and_the_likely_one() -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec({**SMALL, "attack": {"n_free_riders": 2}})
    assert str(err.value) == (
        "unknown key 'attack.n_free_riders' in the config (did you mean 'free_riders'?); attack "
        "takes: data_attack, free_riders, model_attack, n_malicious, privacy_attacks, "
        "start_round, stop_round."
    )
    with pytest.raises(ConfigError, match=r"\(did you mean 'training'\?\); the top level takes: "):
        parse_spec({**SMALL, "trainig": {}})
    with pytest.raises(ConfigError, match=r"clients takes: cohort_size, min_separation, n_clients"):
        parse_spec({**SMALL, "clients": {"n_client": 3}})


def test_an_unknown_matrix_key_names_the_matrix_keys(tmp_path: Path) -> None:
    from fedguard.matrix.config import load_matrix

    path = _write(tmp_path, {"name": "m", "base": SMALL, "seed": [0]}, "m.yaml")
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'seed' in the config \(did you mean 'seeds'\?\); the top level takes: .*seeds",
    ):
        load_matrix(path)


def test_missing_csv_label_column(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    cfg = {
        **SMALL,
        "data": {"dataset": {"name": "csv", "path": str(csv), "label_column": "target"}},
    }
    code, output = run_cli(["run", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "r")])
    assert code == 2 and "label_column 'target' is not a column" in output
    cfg["data"]["dataset"]["label_column"] = "y"
    cfg["clients"] = {"n_clients": 3}
    code, output = run_cli(["run", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "r")])
    assert code == 0, output


#: configs on data a user downloads (`fedguard data fetch`); each has a `*_synthetic` twin of the
#: official shapes that runs here, and tests/data/test_workload_matrices.py runs it on tiny files
NEEDS_DOWNLOAD = {"privacy_cifar10.yaml"}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate_and_run_briefly(path: Path, tmp_path: Path, monkeypatch) -> None:
    from fedguard.components import build_components

    spec = load_spec(path)
    build_components(spec)
    if path.name in NEEDS_DOWNLOAD:
        # nothing is downloaded implicitly: without the data, one sentence says what to do
        monkeypatch.setenv("FEDGUARD_DATA", str(tmp_path))
        with pytest.raises(ConfigError, match="fedguard data fetch"):
            execute(spec.with_overrides(rounds=1))
        assert (ROOT / "configs" / path.name.replace(".yaml", "_synthetic.yaml")).is_file()
        return
    result = execute(spec.with_overrides(rounds=1))
    assert len(result.records) == 1 and result.records[0]["test_accuracy"] >= 0


def test_quickstart_reaches_its_target_accuracy() -> None:
    # the bar: digits, 20 clients, Dirichlet α = 0.5, MLP, 20 rounds → ≥ 0.85 test accuracy
    result = execute(load_spec(ROOT / "configs" / "quickstart.yaml"))
    assert len(result.records) == 20
    assert result.records[-1]["test_accuracy"] >= 0.85


def test_spec_hash_fills_defaults() -> None:
    a = parse_spec({"model": "mlp"})
    b = parse_spec({"model": {"name": "mlp", "hidden": [32]}})
    assert a.spec_hash() == b.spec_hash()
    assert a.spec_hash() != parse_spec({"model": {"name": "mlp", "hidden": [64]}}).spec_hash()


def test_attack_count_validation() -> None:
    with pytest.raises(ConfigError, match="fewer than clients.n_clients"):
        parse_spec({"clients": {"n_clients": 4}, "attack": {"n_malicious": 4}})


def test_list_components() -> None:
    code, output = run_cli(["list", "components"])
    assert code == 0 and "aggregator" in output and "mean" in output


def test_the_aggregator_oracle_draws_from_the_keyed_streams() -> None:
    """An attack's aggregator oracle (aggregator-aware attacks) draws from the run's keyed stream;
    on the old code it used ``torch.Generator().manual_seed(round)``, the same for every seed."""
    from fedguard.launch import build_simulation
    from fedguard.types import AggregationResult

    draws = []
    for seed in (0, 1):
        sim = build_simulation(parse_spec({**SMALL, "rounds": 1, "seed": seed}))
        state = sim.initial_state()

        def recording(updates: torch.Tensor, weights: object, ctx: object) -> AggregationResult:
            draws.append(torch.rand(4, generator=ctx.generator))  # type: ignore[attr-defined]
            return AggregationResult(updates.mean(0))

        sim.aggregator = recording  # type: ignore[assignment]
        sim.aggregator_oracle(state)(torch.zeros(3, 5))
    assert not torch.equal(draws[0], draws[1])


def test_an_interrupted_runs_spec_with_a_deleted_parameter_is_refused(tmp_path: Path) -> None:
    """Deleting a component's parameter leaves a spec that still reads as canonical; the hash
    in the ledger's header, written when the run started, must catch it before any reader
    (show, audit, report) uses the edited spec."""
    from fedguard.errors import UserError
    from fedguard.storage.run_dir import RunDirectory

    run = RunDirectory(_interrupt_after(parse_spec({**SMALL, "rounds": 3}), tmp_path / "part", 1))
    run.spec()  # untouched: reads
    path = tmp_path / "part" / "spec.yaml"
    data = yaml.safe_load(path.read_text())
    params = data["data"]["partition"]["params"]
    assert "alpha" in params
    del params["alpha"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="changed after the run started"):
        run.spec()
    code, output = run_cli(["show", str(tmp_path / "part")])
    assert code == 2 and "changed after the run started" in output and "Traceback" not in output


def test_an_interrupted_run_is_read_with_one_load_of_its_state(tmp_path: Path, monkeypatch) -> None:
    """Records and ledger both need the journal sizes of state.pt; it is loaded once, and
    again only when a new commit replaced it."""
    from fedguard.storage.run_dir import RunDirectory

    run = RunDirectory(_interrupt_after(parse_spec({**SMALL, "rounds": 3}), tmp_path / "part", 1))
    loads: list[int] = []
    original = RunDirectory.load_state
    monkeypatch.setattr(
        RunDirectory, "load_state", lambda self: (loads.append(1), original(self))[1]
    )
    assert len(run.rounds()) == 1 and len(run.ledger()["rounds"]) == 1
    assert len(loads) == 1
    state = torch.load(tmp_path / "part" / "state.pt", weights_only=True)
    state["journal"] = {**state["journal"], "rounds_bytes": 0}  # a later commit, replaced
    (tmp_path / "part" / "state.pt").unlink()
    torch.save(state, tmp_path / "part" / "state.pt")
    assert run.rounds() == [] and len(loads) == 2


def test_the_same_privacy_attack_twice_keeps_both_results(tmp_path: Path) -> None:
    """Records and the summary keyed results by attack name: a second instance (another target,
    another round) silently overwrote the first. The k-th instance is now ``name#k``, its
    artifacts in a folder of their own."""
    spec = parse_spec(
        {
            **SMALL,
            "rounds": 2,
            "attack": {
                "privacy_attacks": [
                    {"name": "loss_threshold"},
                    {"name": "loss_threshold", "target": "client", "target_client": 0},
                ]
            },
        }
    )
    result = execute(spec, tmp_path / "run")
    attacks = result.summary["privacy_attacks"]
    assert set(attacks) == {"loss_threshold", "loss_threshold#2"}
    # two different evaluations: the client target's members are client 0's samples, the global
    # target's half of its 200 candidates
    assert attacks["loss_threshold"]["n_members"] == 100
    assert attacks["loss_threshold#2"]["n_members"] == len(
        result.simulation.data.client_arrays(0)[1]
    )
    attacked = [r for r in result.records if "privacy_attacks" in r]  # the last round
    assert attacked and all(
        set(r["privacy_attacks"]) == {"loss_threshold", "loss_threshold#2"} for r in attacked
    )
    files = set(result.summary["artifacts"].values())
    assert {f.startswith("artifacts/loss_threshold_2/") for f in files} == {True, False}
    assert all((tmp_path / "run" / f).is_file() for f in files)
