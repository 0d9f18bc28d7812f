"""The first screen of a matrix report: the answer, the held/fell grid, the setup in one line and
the caveats; and the complete setup section."""

from __future__ import annotations

import hashlib
from html import escape
from typing import Any

from fedguard.matrix.config import NO_ATTACK, NO_DEFENSE
from fedguard.matrix.verdict import (
    AT_CHANCE,
    DIVERGED,
    FAILS_WITHOUT_ATTACK,
    Verdict,
    answer,
    verdict_grid,
)
from fedguard.report.html import bullet_list, key_values
from fedguard.report.run_sections import _component


def base_spec(specs: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec of an attacked cell (it names the attackers), else of any cell."""
    attacked = [r["key"] for r in rows if r["attack"] != NO_ATTACK and r["key"] in specs]
    keys = attacked or [k for k in specs]
    return specs[sorted(keys)[0]] if keys else {}


def setup_line(spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """dataset, partition, model, clients, attackers, rounds, seeds — in one line."""
    if not spec:
        return "Setup: not recorded."
    seeds = sorted({r["seed"] for r in rows})
    attackers = sorted(
        {
            r["attack"].rsplit("[", 1)[1].rstrip("]")
            for r in rows
            if r["attack"] != NO_ATTACK and r["attack"].endswith("]")
        }
    )
    n = spec["clients"]["n_clients"]
    who = (
        f"{'/'.join(attackers)} of them attackers in each attacked run"
        if attackers
        else "no attackers"
    )
    return (
        f"Setup: {_component(spec['data']['dataset'])} data, {_component(spec['data']['partition'])} "
        f"partition, {_component(spec['model'])} model, {n} clients ({who}), {spec['rounds']} rounds, "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})."
    )


def grid_html(vs: list[Verdict]) -> str:
    """The held/fell grid: one cell per defense × attack, its outcome as text and data attributes."""
    grid = verdict_grid(vs)
    if grid.empty:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in grid.columns)
    body = []
    for row in grid.index:
        label = f"{row} (undefended baseline)" if row == NO_DEFENSE else row
        tds = "".join(
            f'<td class="verdict v-{escape(str(v).replace(" ", "-"))}" data-defense="{escape(row)}" '
            f'data-attack="{escape(a)}" data-outcome="{escape(str(v))}">{escape(str(v))}</td>'
            for a, v in grid.loc[row].items()
        )
        body.append(f"<tr><th>{escape(label)}</th>{tds}</tr>")
    return (
        '<table class="verdict-grid"><thead><tr><th>defense \\ attack</th>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


def caveats(vs: list[Verdict], rows: list[dict[str, Any]]) -> list[str]:
    out = []
    seeds = {r["seed"] for r in rows}
    if len(seeds) < 2:
        out.append("One seed: verdicts rest on point values, without a confidence interval.")
    failing = sorted({v.defense for v in vs if v.outcome == FAILS_WITHOUT_ATTACK})
    if failing:
        out.append(
            "Not judged, worse than the undefended mean without any attack: "
            + ", ".join(failing)
            + "."
        )
    unjudged = [v for v in vs if v.outcome in (DIVERGED, AT_CHANCE)]
    if unjudged:
        out.append(
            f"{len(unjudged)} pair(s) without a verdict (diverged, or accuracy at chance): "
            + "; ".join(f"{v.defense} × {v.attack}" for v in unjudged)
            + "."
        )
    failed = sum(r["status"] == "failed" for r in rows)
    incompatible = sum(r["status"] == "incompatible" for r in rows)
    if failed or incompatible:
        out.append(
            f"{failed} failed and {incompatible} incompatible cell(s) have no result; see Attack "
            "results."
        )
    out.append(
        "Verdicts hold for this setup (data, partition, attacker fraction, rounds) only; the rule "
        "and every verdict's numbers are under Findings."
    )
    return out


def summary_html(vs: list[Verdict], rows: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    lines = answer(vs)
    return (
        f'<p class="answer"><strong>{escape(lines[0])}</strong> '
        + escape(" ".join(lines[1:]))
        + "</p>"
        + grid_html(vs)
        + f'<p class="setup-line">{escape(setup_line(spec, rows))}</p>'
        + '<div class="caveats">'
        + bullet_list(caveats(vs, rows))
        + "</div>"
    )


def matrix_hash(keys: list[str]) -> str:
    """Names a matrix: the hash of its sorted cell keys (each a spec hash and a code hash)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def setup_html(
    path: Any,
    spec: dict[str, Any],
    rows: list[dict[str, Any]],
    versions: dict[str, tuple[str, str]],
) -> str:
    done = [r for r in rows if r["status"] == "done"]
    attacked = [r for r in rows if r["attack"] != NO_ATTACK]
    pairs: list[tuple[str, Any]] = []
    if spec:
        t, s = spec["training"], spec["server"]
        pairs += [
            ("dataset", _component(spec["data"]["dataset"])),
            (
                "split",
                f"test {spec['data']['test_fraction']}, validation {spec['data']['validation_fraction']}",
            ),
            ("partition", _component(spec["data"]["partition"])),
            ("model", _component(spec["model"])),
            ("clients", f"{spec['clients']['n_clients']} ({spec['clients']['sampling']} sampling)"),
            ("attackers per attacked run", spec["attack"]["n_malicious"] if attacked else 0),
            ("rounds", spec["rounds"]),
            (
                "local training",
                f"{t['algorithm']}, {t['local_epochs']} epoch(s), batch {t['batch_size']}, "
                f"lr {t['learning_rate']}, momentum {t['momentum']}",
            ),
            ("server optimizer", f"{s['optimizer']} (lr {s['learning_rate']})"),
        ]
    pairs += [
        ("seeds", ", ".join(map(str, sorted({r["seed"] for r in rows})))),
        ("attacks", ", ".join(sorted({r["attack"] for r in rows} - {NO_ATTACK}))),
        ("defenses", ", ".join(sorted({r["defense"] for r in rows}))),
        (
            "cells (done / failed / incompatible)",
            f"{len(rows)} ({len(done)} / {sum(r['status'] == 'failed' for r in rows)} / "
            f"{sum(r['status'] == 'incompatible' for r in rows)})",
        ),
        ("matrix hash (sorted cell keys)", matrix_hash([r["key"] for r in rows])),
        (
            "cell spec hashes",
            f"{len(rows)} in results.sqlite, e.g. {min(r['key'] for r in rows).split('-')[0]}"
            if rows
            else "—",
        ),
        ("fedguard version", ", ".join(sorted({v for v, _ in versions.values()})) or "—"),
        ("code hash", ", ".join(sorted({c for _, c in versions.values()})) or "—"),
        # slot: the ledger checks' status row (run-integrity work) goes here
    ]
    return key_values(pairs)
