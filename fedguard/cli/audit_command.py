"""``fedguard audit``: ε of a run from its privacy ledger, or of a DP-SGD / DP-FedAvg setting.

Three forms:

* ``fedguard audit RUN [--delta δ] [--accountant rdp|prv|pld|all] [--json]`` — ε per client and
  overall, recomputed from ``RUN/ledger.jsonl`` (hash chain verified) by
  :func:`fedguard.privacy.budget.ledger_report`; ε after every round (table, and a plot
  ``RUN/privacy_epsilon.png``); the verdict against ``privacy.target_epsilon``; a warning for
  each accountant that cannot handle an event. ``--empirical`` instead trains the run's canary
  variant and bounds ε from below (:func:`fedguard.audit.empirical.empirical_audit`),
  writing ``RUN/audit.json``; for a run whose privacy unit is the user (ULDP-AVG) it uses
  canary users spread over the silos instead (``--canary-unit auto|client|user``,
  ``--silos-per-canary``; :func:`fedguard.audit.user_empirical.user_level_empirical_audit`).
* ``fedguard audit --sampling-rate q --noise-multiplier z --steps T --delta δ`` — the standalone
  calculator (like TF Privacy's ``compute_dp_sgd_privacy``); ``--sampling fixed --population N``
  for a fixed cohort (sampling without replacement, replace-one).
* ``fedguard audit --dp-sgd-canaries [--canary-kind mislabelled|gradient] [--noise-multiplier z]
  [--actual-noise-multiplier z'] [--clip-norm C] [--epochs E] [--canaries m] [--confidence c]
  [--json] [--out DIR]`` — a record-level DP-SGD canary audit that needs no run: ε lower bound
  from one training run with canaries next to the accountants' ε upper bound
  (:mod:`fedguard.cli.sample_canary_command`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from fedguard.cli.accounting_output import (
    accountant_names,
    epsilon_per_accountant,
    format_number,
    jsonable,
)
from fedguard.errors import UserError

if TYPE_CHECKING:
    from fedguard.cli.sample_canary_command import SampleCanaryOptions

_number = format_number  # the shorter name the tables below use

# --------------------------------------------------------------------------------------------
# Standalone calculator


def calculator_event(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int,
    sampling: str,
    population: int | None,
) -> Any:
    from fedguard.privacy.events import clipped_sum_gaussian

    if sampling not in ("poisson", "fixed"):
        raise UserError(f"--sampling must be 'poisson' or 'fixed' (got {sampling!r}).")
    if not (math.isfinite(sampling_rate) and 0 < sampling_rate <= 1):
        raise UserError(f"--sampling-rate must be in (0, 1] (got {sampling_rate!r}).")
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise UserError(
            f"--noise-multiplier must be a finite number > 0 (got {noise_multiplier!r})."
        )
    if steps < 1:
        raise UserError(f"--steps must be an integer >= 1 (got {steps!r}).")
    if sampling == "fixed":
        if population is None:
            raise UserError("--population is required with --sampling fixed.")
        if population < 1:
            raise UserError(f"--population must be an integer >= 1 (got {population!r}).")
    scheme = "poisson" if sampling == "poisson" else "without_replacement"
    # --noise-multiplier means what it means in run configs: noise std ÷ clip norm C.
    return clipped_sum_gaussian(sampling_rate, noise_multiplier, steps, scheme, population)


def neighbouring_note(scheme: str) -> dict[str, str]:
    """The neighbouring relation a sampling scheme is accounted under and the clipped sum's
    sensitivity there, as printed beside every ε."""
    if scheme in ("fixed", "without_replacement"):
        return {"relation": "replace-one", "sensitivity": "2C"}
    return {"relation": "add/remove-one", "sensitivity": "C"}


def standalone_report(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    accountant: str,
    sampling: str,
    population: int | None,
) -> dict[str, Any]:
    names = accountant_names(accountant)
    event = calculator_event(sampling_rate, noise_multiplier, steps, sampling, population)
    per = epsilon_per_accountant(event, delta, names)
    supported = [n for n in names if "epsilon" in per[n]]
    if not supported:
        reason = per[names[0]]["unsupported"]
        raise UserError(f"accountant {names[0]!r} cannot account this setting: {reason}")
    return {
        "epsilon": per[supported[0]]["epsilon"],
        "delta": delta,
        "accountant": supported[0],
        "sampling_rate": sampling_rate,
        "noise_multiplier": noise_multiplier,
        "steps": steps,
        "sampling": "poisson" if sampling == "poisson" else "without_replacement",
        "population": population,
        "noise_multiplier_convention": "noise std / clip norm (as in run configs)",
        "neighbouring_relation": neighbouring_note(sampling)["relation"],
        "sensitivity": neighbouring_note(sampling)["sensitivity"],
        "accountants": per,
    }


# --------------------------------------------------------------------------------------------
# Run audit


def run_report(run: Path, delta: float | None, accountant: str) -> dict[str, Any]:
    from fedguard.privacy.budget import epsilon_by_round, has_events, ledger_report
    from fedguard.storage.run_dir import RunDirectory

    run_dir = RunDirectory(run)
    if not run_dir.exists() or not (run / "spec.yaml").is_file():
        raise UserError(f"{run} is not a fedguard run directory (no spec.yaml).")
    spec = run_dir.spec()
    if not run_dir.has_ledger():
        raise UserError(
            f"{run} has no privacy ledger (ledger.jsonl): its privacy spending is unknown, so no "
            "ε can be stated."
        )
    ledger = run_dir.ledger()  # verifies the chain: a tampered or torn file is a LedgerError
    from fedguard.audit.evidence import gather_evidence

    # seal, cross-checks against spec.yaml/rounds.jsonl, signature: a contradiction is exit 2
    evidence = gather_evidence(run_dir)
    delta = spec.privacy.delta if delta is None else delta
    names = accountant_names(accountant)
    report = ledger_report(ledger, delta, names)
    warnings: list[str] = []
    for level, entry in report["levels"].items():
        for name, acc in entry["accountants"].items():
            if "unsupported" in acc:
                what = "refused" if acc.get("refused") else "unsupported"
                warnings.append(f"{name} accountant ({level} level) {what}: {acc['unsupported']}")
    by_round: list[tuple[int, float]] = []
    if report["accountant"] is not None:
        by_round = epsilon_by_round(ledger, delta, report["accountant"])
    target = spec.privacy.target_epsilon
    verdict = None
    if target is not None:
        eps = report["epsilon"]
        within = eps is not None and math.isfinite(eps) and eps <= target
        verdict = {"target_epsilon": target, "within_budget": within}
    if not has_events(ledger):
        warnings.append("no privacy mechanism ran: the run has no formal DP guarantee (ε = ∞).")
    summary = run_dir.summary() if run_dir.complete else {}
    stopped = summary.get("rounds_completed", spec.rounds) < spec.rounds
    relation = (ledger.get("sampling") or {}).get("neighbouring_relation")
    report.update(
        {
            "evidence": evidence.to_dict(),
            "neighbouring_relation": relation,
            "sensitivities": gaussian_sensitivities(ledger),
            "communication": quantization_bits(ledger),
            "run": str(run),
            "rounds_recorded": len(ledger.get("rounds", [])),
            "sampling": ledger.get("sampling"),
            "epsilon_by_round": [[t, e] for t, e in by_round],
            "budget": verdict,
            "stopped_early": bool(stopped),
            "rounds_configured": spec.rounds,
            "noise_source": "os_csprng" if spec.privacy.secure_rng else "seeded (simulation)",
            "warnings": warnings,
        }
    )
    if by_round:
        report["plot"] = str(_plot(run / "privacy_epsilon.png", by_round, report, target))
    return report


def gaussian_sensitivities(ledger: dict[str, Any]) -> list[float]:
    """The distinct L2 sensitivities of the Gaussian events in the ledger (each event's noise std
    is its multiplier times this), so an ε is never printed without what it was relative to."""
    found: set[float] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "gaussian" and "sensitivity" in node:
                found.add(float(node["sensitivity"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(ledger.get("rounds", []))
    return sorted(found)


def quantization_bits(ledger: dict[str, Any]) -> dict[str, Any] | None:
    """Bits per coordinate of the randomized-quantization releases in the ledger (log2 m)."""
    from fedguard.privacy.rqm import rqm_bits_per_coordinate

    levels = {
        int(e["levels"]): int(e.get("coordinates", 1))
        for r in ledger.get("rounds", [])
        for events in (r.get("clients") or {}).values()
        for e in events
        if isinstance(e, dict) and e.get("type") == "randomized_quantization"
    }
    if not levels:
        return None
    m, d = max(levels.items())
    bits = rqm_bits_per_coordinate(m)
    return {"mechanism": "rqm", "bits_per_coordinate": bits, "bits_per_client_round": bits * d}


def _plot(
    path: Path, by_round: list[tuple[int, float]], report: dict, target: float | None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedguard.storage.atomic import write_bytes

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([t for t, _ in by_round], [e for _, e in by_round], marker="o", ms=3)
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", label=f"target ε = {target:g}")
        ax.legend()
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(f"ε (δ = {report['delta']:g})")
    ax.set_title(f"privacy spent ({report['accountant']} accountant)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def print_run_report(report: dict[str, Any], console: Console) -> None:
    if report.get("evidence"):  # first line: which checks of the run's evidence passed
        console.print(report["evidence"]["line"], highlight=False, soft_wrap=True)
    console.print(
        f"[bold]ε = {_number(report['epsilon'])}[/] at δ = {report['delta']:g} "
        f"({report['accountant'] or 'no accountant'}; {report['rounds_recorded']} rounds; "
        f"noise {report['noise_source']})",
        highlight=False,
    )
    relation = report.get("neighbouring_relation")
    if relation:
        words = {"add_remove": "add/remove-one", "replace_one": "replace-one"}.get(
            relation, relation
        )
        sens = ", ".join(f"{v:g}" for v in report.get("sensitivities") or [])
        rule = "the clip norm C" if relation == "add_remove" else "2 × the clip norm C"
        console.print(
            f"neighbouring relation: {words}; a clipped sum's L2 sensitivity is {rule}"
            + (f" (here {sens}; noise std = ledger multiplier × sensitivity)" if sens else ""),
            highlight=False,
        )
    for line in matrix_check_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    for level, entry in report["levels"].items():
        table = Table(title=f"{level}-level: {entry['unit']['description']}")
        table.add_column("accountant")
        table.add_column("ε overall", justify="right")
        table.add_column("ε population", justify="right")
        table.add_column("clients with own events", justify="right")
        table.add_column("worst client", justify="right")
        if not any(acc.get("per_client") for acc in entry["accountants"].values()):
            # a bare 0 and an empty cell read as "no client covered"; the opposite is true
            table.caption = "No client has events of its own: every client's ε is the population's."
        for name, acc in entry["accountants"].items():
            if "unsupported" in acc:
                table.add_row(name, "refused" if acc.get("refused") else "unsupported", "", "", "")
                continue
            per = acc.get("per_client") or {}
            worst = max(per.items(), key=lambda kv: kv[1]) if per else None
            table.add_row(
                name,
                _number(acc["epsilon"]),
                _number(acc.get("population_epsilon")),
                str(len(per)),
                f"{worst[0]}: {_number(worst[1])}" if worst else "",
            )
        console.print(table)
    if report["epsilon_by_round"]:
        table = Table(title=f"ε after each round ({report['accountant']})")
        table.add_column("round", justify="right")
        table.add_column("ε", justify="right")
        rows = report["epsilon_by_round"]
        step = max(1, len(rows) // 20)
        for t, e in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
            table.add_row(str(t), _number(e))
        console.print(table)
        console.print(f"plot: {report.get('plot')}")
    if report.get("communication"):
        comm = report["communication"]
        console.print(
            f"randomized quantization: {comm['bits_per_coordinate']:g} bits per coordinate, "
            f"{comm['bits_per_client_round']:,.0f} bits per client and round"
        )
    if report["budget"] is not None:
        b = report["budget"]
        verdict = "within budget" if b["within_budget"] else "OVER BUDGET"
        # the headline ε the verdict compares with, and its accountant
        console.print(
            f"budget: target ε = {b['target_epsilon']:g}, {report['accountant']} ε = "
            f"{_number(report['epsilon'])} → {verdict}"
        )
    if report["stopped_early"]:
        console.print("the run stopped itself when its privacy budget was spent.")
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")


def matrix_check_lines(report: dict[str, Any]) -> list[str]:
    """One line per DP-FTRL / BandMF mechanism: what its cross-checks re-derived from the
    records (realised sensitivity, schedule) and their result, printed before ε per unit."""
    checks = ((report.get("evidence") or {}).get("cross_checks") or {}).get("checks") or []
    by_path: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        for suffix in (" realised sensitivity", " schedule"):
            if check["name"].endswith(suffix):
                by_path.setdefault(check["name"][: -len(suffix)], []).append(check)
    lines = []
    for path, found in by_path.items():
        word = "passed" if all(c["status"] == "passed" for c in found) else "FAILED"
        details = "; ".join(c["detail"] for c in found)
        lines.append(f"matrix mechanism {path}: {details} — cross-checks {word}")
    return lines


#: ``--canary-unit`` values: the run's own privacy unit, client canaries, user canaries
CANARY_UNITS = ("auto", "client", "user")


def canary_unit_for(run: Path, requested: str) -> str:
    """``"client"`` or ``"user"``: which canaries audit ``run`` (``auto``: user canaries when the
    ledger's headline unit is the user, i.e. a ULDP-AVG run)."""
    from fedguard.audit.user_empirical import describe_levels, user_privacy_levels
    from fedguard.privacy.budget import headline_level

    if requested not in CANARY_UNITS:
        raise UserError(
            f"--canary-unit must be one of {', '.join(CANARY_UNITS)} (got {requested!r})."
        )
    levels = user_privacy_levels(run)
    headline = headline_level(levels) if levels else None
    if requested == "user" and "user" not in levels:
        raise UserError(
            f"--canary-unit user needs a run whose privacy unit is 'user' (ULDP-AVG); {run} "
            f"accounts {describe_levels(levels)}."
        )
    if requested == "client" and headline == "user":
        raise UserError(
            f"--canary-unit client does not apply to {run}: its privacy unit is the user "
            "(ULDP-AVG trains per user, not per client); use --canary-unit user."
        )
    if requested == "auto":
        return "user" if headline == "user" else "client"
    return requested


def user_empirical(
    run: Path,
    canaries: int,
    confidence: float,
    silos_per_canary: int | None,
    console: Console,
    as_json: bool,
) -> None:
    """User-level canaries spread over silos through the run's own mechanism
    (:func:`fedguard.audit.user_empirical.user_level_empirical_audit`)."""
    from fedguard.audit.user_empirical import user_level_empirical_audit
    from fedguard.cli.status import step
    from fedguard.privacy.audit.summary import describe_empirical_audit
    from fedguard.storage.atomic import write_text

    with step(f"user-level canary audit of {run}: {canaries} canary users over its silos"):
        result = user_level_empirical_audit(
            run, canaries, confidence, silos_per_canary=silos_per_canary, out=run / "audit"
        )
    summary = {
        "unit": "user",
        "convention": result["convention"],
        "method": result["method"],
        "confidence": result["confidence"],
        "epsilon_lower_bound": result["epsilon_lower"],
        "epsilon_upper_bound": result["epsilon_upper"],
        "ratio": result["ratio"],
        "baseline_noise_off": result["baseline_noise_off"],
        "n_canaries": result["n_canaries"],
        "silos_per_canary": result["silos_per_canary"],
        "delta": result["delta"],
        "ceiling": result["ceiling"],
        "ceiling_all_guesses": result["ceiling_all_guesses"],
    }
    write_text(run / "audit.json", json.dumps(jsonable(summary), indent=1) + "\n")
    if as_json:
        print(json.dumps(jsonable({**summary, "result": result}), default=str))
        return
    upper = result["epsilon_upper"]
    console.print(
        f"[bold]user level[/] (unit: one user's records in every silo, added or removed): "
        f"empirical ε ≥ {_number(result['epsilon_lower'])} at {100 * confidence:g}% confidence "
        f"vs the ledger's ε = {_number(upper)} at δ = {result['delta']:g}",
        highlight=False,
        soft_wrap=True,
    )
    rounds = result["rounds"]
    console.print(
        f"design: {result['n_canaries']} canary users, each with 1–5 records in "
        f"{result['silos_per_canary']} of the run's {result['n_silos']} silos and inserted with "
        f"probability ½, through {rounds} round{'s' if rounds != 1 else ''} of the run's "
        f"{result['mechanism']}; {result['convention']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(describe_empirical_audit(result), highlight=False)
    console.print(
        f"baseline: the same canaries with the noise switched off give ε ≥ "
        f"{_number(result['baseline_noise_off'])} (what this design detects at all)",
        highlight=False,
    )


def empirical(
    run: Path,
    canaries: int,
    confidence: float,
    console: Console,
    as_json: bool,
    canary_unit: str = "auto",
    silos_per_canary: int | None = None,
) -> None:
    from fedguard.audit.empirical import empirical_audit
    from fedguard.cli.status import step
    from fedguard.privacy.audit.summary import describe_empirical_audit
    from fedguard.storage.atomic import write_text

    if not (run / "spec.yaml").is_file():
        raise UserError(f"{run} is not a fedguard run directory (no spec.yaml).")
    from fedguard.audit.evidence import gather_evidence
    from fedguard.storage.run_dir import RunDirectory

    evidence = gather_evidence(RunDirectory(run))  # a contradicted ledger is refused first
    unit = canary_unit_for(run, canary_unit)
    if unit == "client" and silos_per_canary is not None:
        raise UserError("--silos-per-canary applies to user-level canaries (--canary-unit user).")
    if not as_json:
        console.print(evidence.line(), highlight=False, soft_wrap=True)
    if unit == "user":
        user_empirical(run, canaries, confidence, silos_per_canary, console, as_json)
        return
    with step(
        f"canary audit of {run}: training its canary variant with {canaries} canaries, then "
        "the one-run test",
    ):
        result = empirical_audit(run, canaries, confidence, out=run / "audit")
    summary = {
        "method": result.get("method"),
        "confidence": result.get("confidence"),
        "epsilon_lower_bound": result.get("epsilon_lower"),
        "epsilon_upper_bound": result.get("epsilon_upper"),
        "ratio": result.get("ratio"),
        # what the bound can mean: canaries, δ, and the largest ε this design can certify
        "n_canaries": result.get("n_canaries"),
        "delta": result.get("delta"),
        "ceiling": result.get("ceiling"),
        "ceiling_all_guesses": result.get("ceiling_all_guesses"),
    }
    write_text(run / "audit.json", json.dumps(jsonable(summary), indent=1) + "\n")
    if as_json:
        print(
            json.dumps(
                jsonable({**summary, "evidence": evidence.to_dict(), "result": result}), default=str
            )
        )
    else:
        console.print(describe_empirical_audit(result), highlight=False)


def audit_command(
    run: Path | None,
    delta: float | None,
    accountant: str,
    as_json: bool,
    sampling_rate: float | None,
    noise_multiplier: float | None,
    steps: int | None,
    sampling: str,
    population: int | None,
    run_empirical: bool,
    canaries: int | None,
    confidence: float,
    dp_sgd_canaries: bool = False,
    canary_options: SampleCanaryOptions | None = None,
    canary_unit: str = "auto",
    silos_per_canary: int | None = None,
) -> None:
    console = Console()
    if delta is not None and not (0 < delta < 1):
        raise UserError(f"--delta must be in (0, 1) (got {delta!r}).")
    if not run_empirical and (canary_unit != "auto" or silos_per_canary is not None):
        raise UserError(
            "--canary-unit and --silos-per-canary apply to the empirical audit of a run "
            "(RUN --empirical)."
        )
    if dp_sgd_canaries or (canary_options is not None and canary_options.given()):
        from fedguard.cli.sample_canary_command import SampleCanaryOptions, sample_canary_command

        not_with_canaries = {
            "a RUN directory": run is not None,
            "--empirical": run_empirical,
            "--sampling-rate": sampling_rate is not None,
            "--steps": steps is not None,
            "--sampling": sampling != "poisson",
            "--population": population is not None,
        }
        options = canary_options if canary_options is not None else SampleCanaryOptions()
        sample_canary_command(
            options, dp_sgd_canaries, not_with_canaries, noise_multiplier, canaries, confidence,
            delta, accountant, as_json,
        )  # fmt: skip
        return
    calculator = [sampling_rate, noise_multiplier, steps]
    if run is None:
        if any(v is None for v in calculator):
            raise UserError(
                "give a RUN directory, or all of --sampling-rate, --noise-multiplier and --steps."
            )
        assert sampling_rate is not None and noise_multiplier is not None and steps is not None
        report = standalone_report(
            sampling_rate,
            noise_multiplier,
            steps,
            1e-5 if delta is None else delta,
            accountant,
            sampling,
            population,
        )
        if as_json:
            print(json.dumps(jsonable(report)))
            return
        console.print(
            f"ε = {_number(report['epsilon'])} at δ = {report['delta']:g} "
            f"({report['accountant']}; q = {sampling_rate:g}, z = {noise_multiplier:g} "
            f"= noise std ÷ clip norm C, T = {steps}, {report['sampling']} sampling; "
            f"{report['neighbouring_relation']} neighbours, sensitivity {report['sensitivity']})",
            highlight=False,
        )
        for name, entry in report["accountants"].items():
            if "unsupported" in entry:
                what = "refused" if entry.get("refused") else "unsupported"
                console.print(f"[yellow]warning:[/] {name} {what}: {entry['unsupported']}")
            elif name != report["accountant"]:
                console.print(f"  {name}: ε = {_number(entry['epsilon'])}")
        return
    if any(v is not None for v in calculator):
        raise UserError("give either a RUN directory or the calculator flags, not both.")
    if not run.is_dir():
        raise UserError(f"run directory {run} does not exist.")
    if run_empirical:
        canaries = 1000 if canaries is None else canaries
        if canaries < 10:
            raise UserError(f"--canaries must be at least 10 (got {canaries}).")
        if not (0 < confidence < 1):
            raise UserError(f"--confidence must be in (0, 1) (got {confidence!r}).")
        empirical(run, canaries, confidence, console, as_json, canary_unit, silos_per_canary)
        return
    report = run_report(run, delta, accountant)
    if as_json:
        print(json.dumps(jsonable(report)))
    else:
        print_run_report(report, console)
