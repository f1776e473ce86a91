r"""``python -m bnaf report``: assemble ``reports/report.md`` from the parts' JSON twins.

Each part (toy, Table 1, Table 2, normalisation; listed in ``params/<budget>/report.yaml``)
writes ``reports/<name>.md`` and a JSON twin. The report puts, for every reproduced number, the
published one beside it (and, at the paper's budget, the difference in published standard
deviations), then embeds the part's own table and figures, what it did not run and why (one line
per cause), and where it differs from the paper. A part whose JSON is absent is named as not run
with the reason; a malformed one is an error. Nothing here is written by hand: every number
comes from the parts' files.

Besides the Markdown and its JSON twin it writes, on request, one flat DVC metrics file per part
(``--metrics DIR``, :mod:`bnaf.report.metrics`) and HTML renderings for ``snakemake --report``
(``--html DIR``, :mod:`bnaf.report.html`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from bnaf.core.config import load
from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json, atomic_write_text
from bnaf.report import curves as learning_curves
from bnaf.report import html
from bnaf.report.cost import cost_lines, costs
from bnaf.report.metrics import part_metrics
from bnaf.report.params import ReportParams
from bnaf.report.parts import comparisons, difference_rows, not_run_items
from bnaf.report.provenance import how_run, stage_times
from bnaf.report.sections import (
    comparison_table,
    difference_lines,
    not_run_lines,
    shorten_reasons,
)

__all__ = ["add_arguments", "build", "load_part", "run", "write_html", "write_metrics"]


def load_part(path: Path) -> dict[str, Any]:
    """Read a part's JSON twin; a malformed one fails naming the file and the problem."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BnafError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BnafError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in ("differences", "not_run"):
        if key not in data:
            raise BnafError(f"{path}: missing the '{key}' list every part must write")
        if not isinstance(data[key], list):
            raise BnafError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data


def _demote(markdown: str) -> str:
    """A part's own Markdown, its headings pushed two levels down to nest in its section."""
    lines = []
    for line in markdown.splitlines():
        lines.append("##" + line if line.startswith("#") else line)
    return "\n".join(lines).strip()


def build(
    params: ReportParams, workdir: Path, out_dir: Path, curves: Path | None = None
) -> tuple[str, dict[str, Any]]:
    """The report's Markdown and its JSON twin; with ``curves``, also the learning-curves
    figure of the parts' runs, written there (:mod:`bnaf.report.curves`)."""
    parts: dict[str, dict[str, Any]] = {}
    missing: list[dict[str, str]] = []
    for spec in params.parts:
        path = workdir / spec.json
        if path.is_file():
            parts[spec.name] = load_part(path)
            continue
        wired = (workdir / "workflow" / "rules" / f"{spec.rules}.smk").is_file()
        reason = (
            f"{spec.json} was not produced"
            if wired
            else f"its rules (workflow/rules/{spec.rules}.smk) are not part of this workflow"
        )
        missing.append({"part": spec.name, "title": spec.title, "reason": reason})

    rows = [
        c
        for spec in params.parts
        if spec.name in parts
        for c in comparisons(spec.name, parts[spec.name])
    ]
    title = "B-NAF reproduction report"
    if params.reduced:
        title += f" — REDUCED budget ({params.budget})"
    md = [f"# {title}", ""]
    if params.reduced:
        md += [
            f"> **Reduced budget `{params.budget}`:** every model here trained for far fewer "
            "steps than in the paper, so the numbers below test the pipeline, not the paper's "
            "claims. Run `make paper` for the full budget.",
            "",
        ]
    md += ["## Reproduced against published", ""]
    md.append(comparison_table(rows, params.reduced) if rows else "No part has run yet.")
    if rows and params.reduced:
        md += [
            "",
            "At a reduced budget the distance from the published value, in published standard "
            "deviations, measures the budget rather than the method: it is given only at the "
            "paper's budget.",
        ]
    compared = {r.part for r in rows}
    quiet = [s for s in params.parts if s.name in parts and s.name not in compared]
    if quiet:
        md += [""] + [
            f"- {s.title}: no number with a published counterpart (see its section)."
            for s in quiet
        ]

    differences: list[dict[str, str]] = []
    not_run: list[dict[str, str]] = list(missing)
    entries: list[tuple[str, Any]] = []
    sections: list[str] = []
    for spec in params.parts:
        if spec.name not in parts:
            continue
        data = parts[spec.name]
        sections += ["", f"## {spec.title}", ""]
        md_path = workdir / spec.markdown if spec.markdown else None
        if md_path is not None and md_path.is_file():
            sections.append(_demote(shorten_reasons(md_path.read_text(), data["not_run"])))
        for fig in spec.figures:
            if (workdir / fig).is_file():
                rel = os.path.relpath(workdir / fig, out_dir)
                sections += ["", f"![{Path(fig).stem}]({rel})"]
            else:
                not_run.append({"part": spec.name, "what": fig, "reason": "figure not produced"})
                entries.append((spec.name, {"what": fig, "reason": "figure not produced"}))
        not_run += [{"part": spec.name, "what": x} for x in not_run_items(data["not_run"])]
        entries += [(spec.name, item) for item in data["not_run"]]
        differences += [{"part": spec.name, **d} for d in difference_rows(data["differences"])]

    md += ["", "## Not run", ""]
    md += [f"- **{m['title']}** (`{m['part']}`): not run — {m['reason']}." for m in missing]
    md += not_run_lines(entries)
    if not missing and not entries:
        md.append("Everything the params ask for was run.")
    md += sections
    drawn = None
    if curves is not None:
        drawn = learning_curves.write(params.parts, parts, workdir, curves)
        rel = os.path.relpath(curves, out_dir)
        md += ["", "## Learning curves", "", f"![curves]({rel})", "", learning_curves.CAPTION]
        if drawn["not_drawn"]:
            md += [""] + [f"- Not drawn: {n}." for n in drawn["not_drawn"]]
    md += [""] + how_run(params, parts, workdir)
    cost_md, cost_rows = cost_lines(costs(workdir, [s.name for s in params.parts]))
    md += [""] + cost_md
    md += ["", "### Where this run differs from the paper", ""]
    if params.reduced:
        md += [
            f"Budget `{params.budget}` is reduced (fewer epochs, iterations, seeds or samples;",
            "each part's params file says which), besides the choices below.",
            "",
        ]
    md += difference_lines(differences) if differences else ["None recorded by the parts."]
    twin = {
        "budget": params.budget,
        "reduced": params.reduced,
        "parts_run": sorted(parts),
        "comparisons": [r.as_dict() for r in rows],
        "not_run": not_run,
        "differences": differences,
        "stage_times": [t.__dict__ for t in stage_times(workdir)],
        "cost": cost_rows,
    }
    if drawn is not None:
        twin["curves"] = drawn
    return "\n".join(md) + "\n", twin


def write_metrics(params: ReportParams, workdir: Path, out_dir: Path) -> list[Path]:
    r"""One flat metrics file per part of the params, ``{}`` for a part that did not run."""
    written = []
    for spec in params.parts:
        path = workdir / spec.json
        data = load_part(path) if path.is_file() else None
        ours = {}
        if data is not None:
            ours = {c.what: c.ours for c in comparisons(spec.name, data) if c.ours is not None}
        written.append(out_dir / f"{spec.name}.json")
        atomic_write_json(written[-1], part_metrics(spec.name, data, ours))
    return written


def write_html(params: ReportParams, workdir: Path, report_md: Path, out_dir: Path) -> None:
    r"""``report.html`` (the whole report), ``landing.html`` (its body, for Snakemake's landing
    page) and ``<part>.html`` for every part of the params (its table, or why it is absent)."""
    body = html.render(report_md.read_text(), report_md.parent)
    atomic_write_text(out_dir / "report.html", html.page("B-NAF reproduction report", body))
    atomic_write_text(out_dir / "landing.html", html.landing(body))
    for spec in params.parts:
        md_path = workdir / spec.markdown if spec.markdown else None
        if md_path is not None and md_path.is_file():
            part = html.render(md_path.read_text(), md_path.parent)
        else:
            part = f"<h1>{spec.title}</h1>\n<p>Not run: {spec.markdown or spec.json} absent.</p>"
        atomic_write_text(out_dir / f"{spec.name}.html", html.page(spec.title, part))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/report.yaml")
    parser.add_argument("--output", default="reports/report.md", help="the Markdown report")
    parser.add_argument("--json", default="reports/report.json", help="its JSON twin")
    parser.add_argument("--metrics", default=None, help="folder for one DVC metrics file per part")
    parser.add_argument("--html", default=None, help="folder for the HTML renderings")
    parser.add_argument("--curves", default=None, help="the learning-curves figure (PNG)")
    parser.add_argument("--workdir", default=".", help="root the parts' paths are relative to")


def run(args: argparse.Namespace) -> int:
    params = load(args.params, ReportParams, section="report")
    output = Path(args.output)
    workdir = Path(args.workdir)
    curves = Path(args.curves) if args.curves else None
    text, twin = build(params, workdir, output.parent, curves)
    atomic_write_text(output, text)
    atomic_write_json(args.json, twin)
    if args.metrics:
        write_metrics(params, workdir, Path(args.metrics))
    if args.html:
        write_html(params, workdir, output, Path(args.html))
    print(
        f"report: {len(twin['parts_run'])}/{len(params.parts)} parts, "
        f"{len(twin['comparisons'])} comparisons -> {output}"
    )
    return 0
