"""Headless Chromium: PDF printing and screenshots of a report (no network, no GPU)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from fedguard.errors import UserError

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], html: Path) -> str:
    exe = chromium()
    if exe is None:
        raise UserError("--pdf needs a headless Chromium (Debian: apt-get install chromium).")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed: {proc.stderr[-500:]}")
    return proc.stdout


def print_pdf(html: Path, pdf: Path) -> None:
    _run([f"--print-to-pdf={pdf.resolve()}", "--no-pdf-header-footer"], html)


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 4000) -> None:
    _run([f"--screenshot={png.resolve()}", f"--window-size={width},{height}"], html)


def dump_dom(html: Path, width: int = 1280, height: int = 800) -> str:
    """The DOM after layout and scripts, in a ``width`` × ``height`` window (layout checks)."""
    return _run([f"--window-size={width},{height}", "--dump-dom"], html)
