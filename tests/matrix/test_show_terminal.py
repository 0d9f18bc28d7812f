"""The matrix as a person reads it at 80 columns: the answer first, nothing wrapped or dropped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from fedguard.matrix.show import show_matrix
from fedguard.matrix.store import ResultStore

DEFENSES = ["mean", "momentum+centered_clipping", "nnm+trimmed_mean", "median"]
ATTACKS = [
    "none",
    "sign_flip(magnitude=4)[4]",
    "gaussian(std=2.0)[4]",
    "ipm(epsilon=5)[4]",
    "alie[4]",
    "label_flip[4]",
]
ACCURACY = {
    "mean": 0.5,
    "momentum+centered_clipping": 0.83,
    "nnm+trimmed_mean": 0.91,
    "median": 0.9,
}


@pytest.fixture()
def matrix_dir(tmp_path: Path) -> Path:
    """A stored 4 × 6 × 2-seed matrix with long labels (no training: crafted results)."""
    store = ResultStore(tmp_path / "results.sqlite")
    keys = []
    for d_i, defense in enumerate(DEFENSES):
        for a_i, attack in enumerate(ATTACKS):
            for seed in (0, 1):
                acc = 0.92 if attack == "none" else ACCURACY[defense] - 0.01 * a_i
                key = f"k{d_i}{a_i}{seed}"
                keys.append(key)
                cell = {"attack": attack, "defense": defense, "seed": seed, "axes": [], "spec": {}}
                metrics = {"test_accuracy": acc + 0.001 * seed, "n_classes": 10}
                store.put(key, cell, "done", metrics=metrics, records=[])
    store.set_meta("name", "wide")
    store.set_meta("keys", keys)
    store.close()
    return tmp_path


def render(path: Path, width: int) -> str:
    buf = io.StringIO()
    show_matrix(path, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 200])
def test_every_label_and_value_is_shown_within_the_width(matrix_dir: Path, width: int) -> None:
    text = render(matrix_dir, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    # every label appears unbroken (in the table or its legend), and no "…" cut a value
    for label in DEFENSES + ATTACKS:
        assert label in text or any(label in line for line in lines), label
    assert "…" not in text
    for defense in DEFENSES:
        for a_i, attack in enumerate(ATTACKS):
            acc = 0.92 if attack == "none" else ACCURACY[defense] - 0.01 * a_i
            assert f"{acc + 0.0005:.2f}" in text


def test_the_answer_comes_first(matrix_dir: Path) -> None:
    lines = render(matrix_dir, 80).splitlines()
    assert lines[0].startswith("Which defenses held")
    assert "judged defense × attack pairs held" in lines[1]
    first_table = next(i for i, line in enumerate(lines) if "mean±std" in line)
    answer = next(i for i, line in enumerate(lines) if "Undefended baseline (mean)" in line)
    assert answer < first_table
    # every defense starts at 0.92 without attack, so all are judged; momentum+centered_clipping
    # loses ≥ 9 points to every attack: it fell to each
    assert "momentum+centered_clipping fell to" in " ".join(lines).replace("\n", " ")


def test_a_long_run_says_which_rounds_the_table_leaves_out() -> None:
    from fedguard.cli.tables import rounds_table

    buf = io.StringIO()
    records = [{"round": i + 1, "clients": 5, "test_accuracy": 0.5} for i in range(20)]
    Console(file=buf, width=80, color_system=None).print(rounds_table(records))
    text = buf.getvalue()
    assert "rounds 7–14 not shown: every round is in rounds.jsonl" in text
    assert "│     6 │" in text and "│    15 │" in text and "│     7 │" not in text


def test_an_unknown_metric_is_one_sentence_naming_the_metrics_and_prints_nothing(
    matrix_dir: Path,
) -> None:
    # it printed a table of dashes and exited 0
    from fedguard.errors import UserError

    buf = io.StringIO()
    with pytest.raises(UserError) as err:
        show_matrix(matrix_dir, Console(file=buf, width=80), metric="bogus")
    assert str(err.value).startswith("--metric 'bogus' is not a metric of this matrix; it has: ")
    assert "test_accuracy" in str(err.value) and "accuracy_drop" in str(err.value)
    assert buf.getvalue() == ""
    text = io.StringIO()
    show_matrix(matrix_dir, Console(file=text, width=200), metric="accuracy_drop")
    assert "accuracy drop (mean±std over seeds" in text.getvalue()


def test_an_attack_metric_keeps_its_csv_name_in_the_title(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.sqlite")
    for seed in (0, 1):
        cell = {"attack": "analytic", "defense": "mean", "seed": seed, "axes": [], "spec": {}}
        metrics = {"test_accuracy": 0.9, "n_classes": 10, "analytic.psnr_db": 20.0 + seed}
        store.put(f"k{seed}", cell, "done", metrics=metrics, records=[])
    store.set_meta("name", "m")
    store.set_meta("keys", ["k0", "k1"])
    store.close()
    buf = io.StringIO()
    show_matrix(tmp_path, Console(file=buf, width=120), metric="analytic.psnr_db")
    assert "analytic.psnr_db (mean±std over seeds" in " ".join(buf.getvalue().split())
