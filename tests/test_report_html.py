"""The HTML report: ``snakemake --report`` shows the report's text as its landing page, every
table inline and every figure, checked in a real headless browser (Chromium via Playwright);
the HTML renderings themselves are checked with an HTML parser.

The browser test runs the report rule of the real workflow on small hand-written parts (the
parts' rule files are present but empty, so their files count as given), then builds the HTML
report as a user does and opens it. Chromium: `.ci/run` installs Debian's
``chromium-headless-shell`` and the ``playwright`` package; ``$BNAF_CHROMIUM`` names another
binary. Without them the test is skipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bnaf.core.config import load
from bnaf.report.html import render
from bnaf.report.params import ReportParams
from bnaf.report.report import write_html

ROOT = Path(__file__).resolve().parents[1]
# A 1x2 PNG (red, blue): its decoded width proves the image itself arrived, not a placeholder.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAEElEQVR4nGP4z8DAwMDwHwAN/wH/"
    "hUjHcwAAAABJRU5ErkJggg=="
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(text: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(text)
    return [attrs for tag, attrs in parser.tags if tag == name]


def _md_tables(markdown: str) -> int:
    # A GitHub table starts with a header line followed by its |---| rule line.
    return len(re.findall(r"^\|.*\|\n\|[-:| ]+\|$", markdown, flags=re.M))


def test_markdown_tables_become_html_tables_and_figures_are_embedded(tmp_path: Path) -> None:
    (tmp_path / "fig.png").write_bytes(PNG)
    markdown = (
        "# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n\n| c |\n|:--|\n| x |\n\n"
        "![fig](fig.png)\n\n![gone](gone.png)\n"
    )
    body = render(markdown, tmp_path)
    assert len(_tags(body, "table")) == 2 == _md_tables(markdown)
    images = _tags(body, "img")
    src = str(images[0]["src"])
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == PNG  # the file itself, not a link
    assert images[1]["src"] == "gone.png" and "Figure not found: gone.png" in body


def test_raw_html_in_a_part_is_escaped(tmp_path: Path) -> None:
    body = render("<script>alert(1)</script>\n\n| a |\n|---|\n| <b>x</b> |\n", tmp_path)
    assert not _tags(body, "script") and not _tags(body, "b")


def _parts(work: Path) -> None:
    """Small parts in their real layouts: Table 1 with a dataset not run, Table 2, toy,
    normalisation, and the figures the report embeds."""
    reports = work / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    how = "Download data.tar.gz and put it at data/raw/maf/data.tar.gz"
    missing = {"dataset": "gas", "reason": "no copy of maf/data.tar.gz", "how_to_supply": how}
    table1 = {
        "results": [
            {
                "dataset": "power",
                "test_ll": {
                    "ours": {"mean": 0.5, "std": 0.02, "n": 3},
                    "paper": {"mean": 0.61, "std": 0.01},
                },
            }
        ],
        "not_run": [missing],
        "differences": [{"topic": "optimiser", "paper": "Adam", "code": "AMSGrad", "ours": "x"}],
    }
    parts = {
        "table1": table1,
        "table2": {"ours": {}, "counts": {}, "not_run": [], "differences": []},
        "toy": {"density": [], "energy": [], "not_run": [], "differences": []},
        "normalisation": {"toy": [], "uci": [], "not_run": [missing], "differences": []},
    }
    for name, data in parts.items():
        (reports / f"{name}.json").write_text(json.dumps(data))
        (reports / f"{name}.md").write_text(
            f"# {name}\n\n| model | value |\n|---|---|\n| ours | {name} cell |\n"
        )
    for fig in ("figure2", "figure3", "samples"):
        (reports / f"{fig}.png").write_bytes(PNG)


def test_each_part_gets_a_page_with_its_table(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params" / "quick" / "report.yaml", tmp_path / "report.yaml")
    params = load(tmp_path / "report.yaml", ReportParams, section="report")
    _parts(tmp_path)
    (tmp_path / "reports" / "report.md").write_text("# R\n\n![f](figure2.png)\n")
    write_html(params, tmp_path, tmp_path / "reports" / "report.md", tmp_path / "html")
    for spec in params.parts:
        page = (tmp_path / "html" / f"{spec.name}.html").read_text()
        assert len(_tags(page, "table")) == 1 and f"{spec.name} cell" in page
    landing = (tmp_path / "html" / "landing.html").read_text()
    assert not _tags(landing, "html") and _tags(landing, "img")[0]["src"].startswith("data:")


def _chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    for exe in (os.environ.get("BNAF_CHROMIUM"), "chromium-headless-shell", "chromium"):
        if exe and shutil.which(exe):
            return str(shutil.which(exe))
    if os.environ.get("CI") == "true":
        pytest.fail("no Chromium for the browser test (.ci/run installs it)")
    pytest.skip("no Chromium (apt-get install chromium-headless-shell, or set $BNAF_CHROMIUM)")


def _workflow(work: Path) -> None:
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    rules = work / "workflow" / "rules"
    rules.mkdir(parents=True)
    for name in ("schemas", "report"):
        shutil.copytree(ROOT / "workflow" / name, work / "workflow" / name)
    for name in ("common", "report"):
        shutil.copy(ROOT / "workflow" / "rules" / f"{name}.smk", rules / f"{name}.smk")
    for name in ("toy", "uci", "vae", "normalisation"):  # present, so their parts are wired
        (rules / f"{name}.smk").write_text("")
    (work / "params" / "quick").mkdir(parents=True)
    shutil.copy(ROOT / "params" / "quick" / "report.yaml", work / "params" / "quick")


def _snakemake(work: Path, *args: str) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "snakemake", *args]
    run = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
def test_html_report_in_a_browser_shows_text_tables_and_figures(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    _workflow(tmp_path)
    _parts(tmp_path)
    _snakemake(tmp_path, "--cores", "1", "reports/report.md")
    _snakemake(tmp_path, "--report", "reports/report.html")
    report_md = (tmp_path / "reports" / "report.md").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "reports" / "report.html").as_uri())
        # Landing page: the report's own text, every one of its tables, every figure decoded.
        page.wait_for_selector(".bnaf-report h1", timeout=60_000)
        assert page.inner_text(".bnaf-report h1") == report_md.splitlines()[0].lstrip("# ")
        text = page.inner_text(".bnaf-report")
        assert "Not run" in text and "it blocks table1: gas; normalisation: gas" in text
        assert "table1 cell" in text and "normalisation cell" in text
        assert page.locator(".bnaf-report table").count() == _md_tables(report_md)
        widths = page.eval_on_selector_all(".bnaf-report img", "l => l.map(i => i.naturalWidth)")
        # the parts' figures (2-pixel fakes), then the learning curves the report stage draws
        assert len(widths) == 4 and widths[:3] == [2, 2, 2] and widths[3] > 2
        assert page.locator(".bnaf-report h1").bounding_box()["y"] >= 0  # top not cut off
        # Each registered table opens inline (an iframe of HTML), not as a download.
        results = page.evaluate("results")
        tables = {k: v for k, v in results.items() if v["mime_type"] == "text/html"}
        assert {Path(k).name for k in tables} >= {f"{n}.html" for n in ("table1", "table2")}
        for path, entry in tables.items():
            page.evaluate(
                "([uri, path]) => app.setView({content: 'html', contentPath: uri, "
                "resultPath: path})",
                [entry["data_uri"], path],
            )
            frame = page.frame_locator("iframe")
            assert frame.locator("table").count() >= 1, path
        assert errors == []
        browser.close()
