"""The language-model privacy section of a matrix report: the numbers per defense, what leaked
next to the original, escaped (the text is attacker-controlled), masked with --redact, and
rendered by headless Chromium without running anything the data smuggled in."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.report.browser import chromium, dump_dom
from fedguard.report.builder import build_report
from fedguard.report.lm_privacy_section import redact_text, summary_table

HOSTILE = "<script>alert(1)</script>"


def require(what: str, available: bool) -> None:
    """Skip locally, fail in CI: a report test must never pass by not running."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI (.ci/run installs it)")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 cells (none, extraction × the mean × 1 seed) of a tiny GPT on messages whose secrets
    are an HTML script tag followed by two digits."""
    root = tmp_path_factory.mktemp("lm_report")
    cfg = {
        "name": "lm_report",
        "base": {
            "rounds": 1,
            "data": {
                "dataset": {
                    "name": "text",
                    "window": 32,
                    "n_authors": 3,
                    "chars_per_author": 120,
                    "secret_formats": {"tag": HOSTILE + "{d2}"},
                    "secrets_per_author": 1,
                    "repetitions": [4],
                },
                "partition": "natural",
                "test_fraction": 0.3,
            },
            "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "d_model": 32, "context": 32},
            "clients": {"n_clients": 3, "weighting": "uniform"},
            "training": {"learning_rate": 0.05, "batch_size": 8},
        },
        "n_malicious": 1,
        "attacks": [{"name": "extraction", "n_samples": 2}],
        "defenses": [],
        "seeds": [0],
    }
    (root / "m.yaml").write_text(yaml.safe_dump(cfg))
    out = root / "m"
    run_matrix(plan_matrix(root / "m.yaml"), out, workers=1)
    return out


def lm_section(html: str) -> str:
    start = html.index('id="lm_privacy"')
    end = html.find("<section", start)
    return html[start : end if end > 0 else len(html)]


def test_section_shows_numbers_and_escaped_leaks_and_redacts(matrix_dir: Path) -> None:
    html = build_report(matrix_dir)
    assert 'data-section="lm_privacy"' in html or 'id="lm_privacy"' in html
    assert "secrets extracted" in html and "perplexity" in html
    assert HOSTILE not in html  # attacker-controlled text never becomes markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # ... but is shown, escaped
    secret = lm_section(html).split("&lt;/script&gt;", 1)[1][:2]
    assert secret.isdigit()  # the planted secret's slot, shown in the plain report
    redacted = lm_section(build_report(matrix_dir, redact=True))
    # the secret is masked wherever it appears; the format's public prefix may remain
    assert f"&lt;script&gt;alert(1)&lt;/script&gt;{secret}" not in redacted
    assert "Secrets are masked" in redacted


def test_section_renders_in_headless_chromium_without_running_the_data(
    matrix_dir: Path, tmp_path: Path
) -> None:
    require("headless Chromium", chromium() is not None)
    page = tmp_path / "report.html"
    page.write_text(build_report(matrix_dir))
    dom = dump_dom(page)
    assert 'id="lm_privacy"' in dom or 'data-section="lm_privacy"' in dom
    assert "What leaked" in dom
    assert HOSTILE not in dom  # no script element was created from the secret
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_redact_masks_secrets_and_long_digit_runs() -> None:
    assert redact_text("call Bob on 555-1234 now", ["call Bob on 555-1234"]) == "█" * 20 + " now"
    assert redact_text("pin 123 and 12", []) == "pin ███ and 12"


def test_summary_table_reports_mean_and_spread_per_defense() -> None:
    rows = []
    for seed, (loss, extracted) in enumerate([(1.0, 1.0), (2.0, 3.0)]):
        rows += [
            {
                "attack": "none",
                "defense": "lora",
                "seed": seed,
                "metric": "test_loss",
                "value": loss,
            },
            {
                "attack": "extraction",
                "defense": "lora",
                "seed": seed,
                "metric": "extraction.extracted",
                "value": extracted,
            },
        ]
    rows += [
        {
            "attack": "sequence_membership",
            "defense": "lora",
            "seed": 0,
            "metric": f"sequence_membership.lira.tpr_at_1pct_fpr{suffix}",
            "value": value,
        }
        for suffix, value in (("", 0.25), ("_reliable", 0.0))
    ]
    html = summary_table(pd.DataFrame(rows))
    assert "0.250 (unreliable)" in html
    # perplexity: mean of e^1 and e^2 with the sample standard deviation
    import math

    e1, e2 = math.e, math.e**2
    mean, std = (e1 + e2) / 2, abs(e2 - e1) / math.sqrt(2)
    assert f"{mean:.3f} ± {std:.3f}" in html
    assert "2.000 ± 1.414" in html
