"""Assemble a report for a run directory or a matrix directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from jinja2 import Environment, PackageLoader

from fedguard import __version__
from fedguard.errors import UserError
from fedguard.report import matrix_sections, run_sections, run_summary
from fedguard.report.privacy_section import privacy_section
from fedguard.report.section import Section
from fedguard.storage.run_dir import RunDirectory


def run_report(path: Path) -> tuple[str, list[Section]]:
    run = RunDirectory(path)
    spec = run.spec()
    records = run.rounds()
    summary = run.summary()
    # first, and before any figure is computed: which checks of the evidence passed (seal,
    # cross-checks, signature, verify); a contradicted ledger is refused here
    evidence_line, evidence_checks = run_sections.evidence_section(run)
    privacy_html, privacy_line = privacy_section(run)
    sections = [] if run.complete else [_interrupted(path, len(records), spec.rounds)]
    sections += [
        Section("evidence", "Evidence", evidence_line),
        Section(
            "summary", "Summary", run_summary.summary_html(run, records, summary, privacy_line)
        ),
        Section("setup", "Setup", run_sections.setup_section(run)),
        Section("checks", "Evidence checks", evidence_checks),
        Section("training", "Accuracy", run_sections.training_section(records)),
        Section("privacy", "Privacy", privacy_html),
        Section(
            "attacks", "Attack results", run_sections.robustness_section(run, records, summary)
        ),
    ]
    contrib = run_sections.contribution_section(run)
    if contrib is not None:
        sections.append(Section("contributions", "Contributions", contrib))
    sections.append(Section("environment", "Environment", run_sections.environment_section(path)))
    sections.append(
        Section("findings", "Findings", run_sections.findings(records, summary, privacy_line))
    )
    return spec.name, sections


def _interrupted(path: Path, done: int, rounds: int) -> Section:
    """An unfinished run says so first: its figures are of the rounds done, not of the run."""
    from fedguard.report.html import paragraph

    text = (
        f"This run is interrupted: {done} of {rounds} rounds completed and it has no completion "
        f"marker. Every figure below covers those rounds only; resume it with "
        f"fedguard run --resume {path}."
    )
    return Section("status", "Status", paragraph(text, "statement warn"))


def build_report(path: Path, redact: bool = False) -> str:
    """The report of a run or matrix directory; ``redact`` masks planted secrets in the
    language-model section's leaked-text examples."""
    if (path / "results.sqlite").is_file():
        title, sections = matrix_sections.matrix_report(path, redact)
        kind = "attack × defense matrix"
    elif (path / "spec.yaml").is_file():
        title, sections = run_report(path)
        kind = "federated run"
    else:
        raise UserError(f"{path} is neither a run directory nor a matrix directory.")
    # autoescape for every template: select_autoescape() does not treat ``.html.j2`` as HTML,
    # and the title is the run name, chosen by whoever made the folder
    env = Environment(loader=PackageLoader("fedguard", "report"), autoescape=True)
    template = env.get_template("template.html.j2")
    return template.render(
        title=title,
        kind=kind,
        sections=sections,
        version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
