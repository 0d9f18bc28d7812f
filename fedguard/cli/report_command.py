"""``fedguard report``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from fedguard.cli.status import step
from fedguard.report.browser import print_pdf
from fedguard.report.builder import build_report
from fedguard.storage import atomic


def report_command(path: Path, out: Path | None, pdf: bool, redact: bool = False) -> None:
    console = Console()
    with step(f"report of {path}: reading results, drawing figures"):
        html = build_report(path, redact=redact)
    out = out or path / "report.html"
    atomic.write_text(out, html)
    console.print(f"report: [bold]{out}[/] ({len(html) / 1024:.0f} KiB, self-contained)")
    if pdf:
        pdf_path = out.with_suffix(".pdf")
        with step("pdf: printing with headless Chromium"):
            print_pdf(out, pdf_path)
        console.print(f"pdf: [bold]{pdf_path}[/]")
