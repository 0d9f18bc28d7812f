"""Bad input of the language-model track through the CLI: one sentence, exit 2, no traceback,
no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.test_exit_codes import run_main

BASE = {
    "name": "lm_bad",
    "rounds": 1,
    "data": {
        "dataset": {"name": "text", "window": 16, "n_authors": 4, "chars_per_author": 500},
        "partition": "natural",
    },
    "model": {
        "name": "gpt",
        "n_layer": 1,
        "n_head": 2,
        "d_model": 16,
        "context": 16,
        "adapter": "lora",
        "lora_rank": 2,
    },
    "clients": {"n_clients": 4},
}


def _with(path: str, value: object) -> dict:
    config = yaml.safe_load(yaml.safe_dump(BASE))
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
    return config


CASES = {
    "adapter target matches no module": (
        _with("model.lora_targets", ["qeury"]),
        "model.lora_targets",
    ),
    "rank larger than the layer": (_with("model.lora_rank", 17), "model.lora_rank"),
    "secret format without candidates": (
        _with("data.dataset.secret_formats", {"pin": "my PIN is 1234"}),
        "dataset.secret_formats.pin",
    ),
    "text without a client column under natural": (None, "partition 'natural'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_language_model_input_is_one_sentence_exit_2(
    case, tmp_path: Path, monkeypatch, capsys
) -> None:
    config, expected = CASES[case]
    if config is None:
        (tmp_path / "plain.txt").write_text("some plain text without any client structure. " * 40)
        config = _with(
            "data.dataset", {"name": "text", "path": str(tmp_path / "plain.txt"), "window": 16}
        )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    status = run_main(monkeypatch, ["run", str(path), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], captured.err
    assert not out.exists()
