"""What a reader sees first, in a real browser: the matrix report's summary above the fold with
the held/fell grid that ``matrix.csv`` implies, and a PDF without stranded headings or split
tables. Headless Chromium renders; in CI (``CI=true``) a missing Chromium fails the test."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from fedguard.matrix.runner import plan_matrix, run_matrix
from fedguard.matrix.summary import read_matrix_csv
from fedguard.matrix.verdict import verdicts
from fedguard.report.browser import chromium, dump_dom, print_pdf
from fedguard.report.builder import build_report

FOLD = (1280, 800)  # a laptop screen


def require(what: str, available: bool) -> None:
    """Skip locally, fail in CI: a report test must never pass by not running."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI (.ci/run installs it)")
    pytest.skip(f"needs {what}")


def pypdf_available() -> bool:
    try:
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny matrix (12 cells of logistic regression, seconds): the undefended mean at chance
    under sign flipping, median fell to it, both judged against ALIE."""
    root = tmp_path_factory.mktemp("layout")
    cfg = {
        "name": "layout",
        "base": {
            "rounds": 4,
            "data": {"dataset": "digits", "partition": "iid"},
            "model": "logreg",
            "clients": {"n_clients": 8},
            "training": {"learning_rate": 0.1},
        },
        "n_malicious": 2,
        "attacks": [{"name": "sign_flip", "magnitude": 4}, "alie"],
        "defenses": ["median"],
        "seeds": [0, 1],
    }
    (root / "m.yaml").write_text(yaml.safe_dump(cfg))
    out = root / "m"
    run_matrix(plan_matrix(root / "m.yaml"), out)
    (out / "report.html").write_text(build_report(out))
    return out


PROBE = """<script>
(() => {
  const s = document.querySelector('section[data-section="summary"]').getBoundingClientRect();
  const cells = [...document.querySelectorAll('table.verdict-grid td.verdict')].map(
    td => [td.dataset.defense, td.dataset.attack, td.innerText.trim()]);
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({top: s.top, bottom: s.bottom, height: window.innerHeight,
                                    first: document.querySelector('section').id, cells});
  document.body.appendChild(pre);
})();
</script>"""


def test_summary_is_above_the_fold_and_its_grid_is_what_matrix_csv_implies(
    matrix_dir: Path, tmp_path: Path
) -> None:
    require("headless Chromium", chromium() is not None)
    html = (matrix_dir / "report.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = dump_dom(probed, *FOLD)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["first"] == "summary"
    # the viewport is the window less the browser's own chrome (about 660 of 800 pixels)
    assert 600 <= probe["height"] <= FOLD[1]
    assert 0 <= probe["top"] and probe["bottom"] <= probe["height"], probe
    expected = {
        (v.defense, v.attack): v.outcome
        for v in verdicts(read_matrix_csv(matrix_dir / "matrix.csv"))
    }
    shown = {(d, a): outcome for d, a, outcome in probe["cells"]}
    assert shown == expected
    assert expected[("mean", "sign_flip(magnitude=4)[2]")] == "at chance"
    assert expected[("median", "sign_flip(magnitude=4)[2]")] in ("held", "fell")


class Outline(HTMLParser):
    """Heading texts and, per table, the text of each row."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tables: list[list[str]] = []
        self._heading: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3"):
            self._heading = []
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(squash(" ".join(self._heading)))
            self._heading = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(squash(" ".join(self._row)))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)
        if self._row is not None:
            self._row.append(data)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def page_problems(html: str, pages: list[str]) -> list[str]:
    """Pages that end on a heading, and tables whose rows land on two pages."""
    outline = Outline()
    outline.feed(html)
    lines = [[squash(x) for x in page.splitlines() if x.strip()] for page in pages]
    problems = []
    for i, page in enumerate(lines[:-1]):
        if page and page[-1] in outline.headings:
            problems.append(f"page {i + 1} ends on the heading {page[-1]!r}")
    texts = ["".join(page) for page in lines]
    for t, rows in enumerate(outline.tables):
        head, last = rows[0], rows[-1]
        starts = [
            (i, m.start())
            for i, text in enumerate(texts)
            for m in re.finditer(re.escape(head), text)
        ]
        whole = any(last in texts[i][at:] for i, at in starts)
        if starts and not whole:
            problems.append(f"table {t + 1} ({head[:40]}…) is split across pages")
    return problems


def pdf_pages(pdf: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(pdf).pages]


def test_pdf_strands_no_heading_and_splits_no_table(matrix_dir: Path, tmp_path: Path) -> None:
    require("headless Chromium", chromium() is not None)
    require("pypdf (pip install -e '.[dev]')", pypdf_available())
    pdf = tmp_path / "report.pdf"
    print_pdf(matrix_dir / "report.html", pdf)
    pages = pdf_pages(pdf)
    assert len(pages) >= 2
    assert page_problems((matrix_dir / "report.html").read_text(), pages) == []


def test_the_pdf_check_catches_a_stranded_heading_and_a_split_table(tmp_path: Path) -> None:
    require("headless Chromium", chromium() is not None)
    require("pypdf (pip install -e '.[dev]')", pypdf_available())
    rows = "".join(f"<tr><td>row {i}</td><td>{i * i}</td></tr>" for i in range(60))
    html = (
        "<html><body>"
        '<div style="height: 24.2cm"></div><h2>Stranded heading</h2>'
        '<p style="page-break-before: always">next page</p>'
        f"<h3>Long table</h3><table>{rows}</table></body></html>"
    )
    page = tmp_path / "bad.html"
    page.write_text(html)
    pdf = tmp_path / "bad.pdf"
    print_pdf(page, pdf)
    problems = page_problems(html, pdf_pages(pdf))
    assert any("ends on the heading 'Strandedheading'" in p for p in problems), problems
    assert any(p.startswith("table 1 ") and "split" in p for p in problems), problems
