r"""``python -m bnaf report``: assemble ``reports/report.md`` from the parts' JSON twins.

Each part (toy, Table 1, Table 2, normalisation; listed in ``params/<budget>/report.yaml``)
writes ``reports/<name>.md`` and a JSON twin. The report puts, for every reproduced number, the
published one beside it and the difference in published standard deviations, then embeds the
part's own table and figures, what it did not run and why, and where it differs from the paper.
A part whose JSON is absent is named as not run with the reason; a malformed one is an error.
Nothing here is written by hand: every number comes from the parts' files.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bnaf.core.config import load
from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json, atomic_write_text
from bnaf.report.params import ReportParams
from bnaf.report.parts import Comparison, comparisons, difference_rows, fmt, not_run_items
from bnaf.report.provenance import devices_in, library_versions, stage_times

__all__ = ["add_arguments", "build", "load_part", "metrics", "run"]


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


def _comparison_table(rows: list[Comparison]) -> str:
    body = [
        [r.part, r.what, fmt(r.ours, r.ours_std), fmt(r.paper, r.paper_std), r.delta_text()]
        for r in rows
    ]
    head = ["part", "quantity", "ours", "published", "(ours - published) / published std"]
    return tabulate(body, head, tablefmt="github", disable_numparse=True)


def _how_run(params: ReportParams, parts: dict[str, dict[str, Any]], workdir: Path) -> list[str]:
    from bnaf.core.runtime import environment_info

    env = environment_info()
    label = "REDUCED: far fewer epochs/steps than the paper" if params.reduced else "the paper's"
    budgets = [
        f"{name} `{data.get('budget', '?')}`"
        + (" (REDUCED)" if data.get("reduced") else "")
        + ("" if data.get("budget") in (None, params.budget) else " — NOT this report's budget")
        for name, data in parts.items()
    ]
    devices = sorted(set().union(*(devices_in(p) for p in parts.values())) or {"not recorded"})
    out = [
        "## How this was run",
        "",
        f"- **Budget:** `{params.budget}` — {label}.",
        f"- **Budget each part was built with:** {', '.join(budgets) or 'no part ran'}.",
        f"- **Devices used by the runs:** {', '.join(devices)}.",
        f"- **This machine:** {env['platform']}, {env['processor']}, {env['cpu_count']} CPUs"
        + (f", GPU {env['gpu']}" if env.get("gpu") else "")
        + ".",
        f"- **Git commit:** `{env['git_commit'] or 'unknown (not a git checkout)'}`.",
        f"- **Generated:** {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        "",
        "### Wall time per stage",
        "",
    ]
    times = stage_times(workdir)
    if times:
        rows = [[t.rule, t.jobs, f"{t.wall_s:.1f}", f"{t.longest_s:.1f}"] for t in times]
        out.append(
            tabulate(rows, ["rule", "jobs", "summed wall time (s)", "longest job (s)"], "github")
        )
        total = sum(t.wall_s for t in times)
        span = max(t.last_end for t in times) - min(t.first_start for t in times)
        out += [
            "",
            f"Total compute: {total:.1f} job-seconds ({total / 3600:.2f} job-hours); "
            f"first job start to last job end: {span / 60:.1f} min.",
        ]
    else:
        out.append("No Snakemake job records found (.snakemake/metadata): stage times unknown.")
    versions = {k: env[k] for k in ("python", "torch", "numpy")} | library_versions()
    out += ["", "### Library versions", ""]
    out.append(tabulate(sorted(versions.items()), ["library", "version"], "github"))
    return out


def build(params: ReportParams, workdir: Path, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """The report's Markdown and its JSON twin."""
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
    md.append(_comparison_table(rows) if rows else "No reproduced numbers: no part has run.")
    compared = {r.part for r in rows}
    quiet = [s for s in params.parts if s.name in parts and s.name not in compared]
    if quiet:
        md += [""] + [
            f"- {s.title}: no reproduced number with a published counterpart here "
            "(the paper prints none for it, or it was not run); its results are in its section."
            for s in quiet
        ]

    differences: list[dict[str, str]] = []
    not_run: list[dict[str, str]] = list(missing)
    sections: list[str] = []
    for spec in params.parts:
        if spec.name not in parts:
            continue
        data = parts[spec.name]
        sections += ["", f"## {spec.title}", ""]
        md_path = workdir / spec.markdown if spec.markdown else None
        if md_path is not None and md_path.is_file():
            sections.append(_demote(md_path.read_text()))
        for fig in spec.figures:
            if (workdir / fig).is_file():
                rel = os.path.relpath(workdir / fig, out_dir)
                sections += ["", f"![{Path(fig).stem}]({rel})"]
            else:
                not_run.append({"part": spec.name, "what": fig, "reason": "figure not produced"})
        not_run += [{"part": spec.name, "what": x} for x in not_run_items(data["not_run"])]
        differences += [{"part": spec.name, **d} for d in difference_rows(data["differences"])]

    md += ["", "## Not run", ""]
    for m in not_run:
        if "title" in m:
            md.append(f"- **{m['title']}** (`{m['part']}`): not run — {m['reason']}.")
        elif "reason" in m:
            md.append(f"- ({m['part']}) `{m['what']}`: {m['reason']}.")
        else:
            md.append(f"- ({m['part']}) {m['what']}")
    if not not_run:
        md.append("Everything the params ask for was run.")
    md += sections
    md += [""] + _how_run(params, parts, workdir)
    md += ["", "### Where this run differs from the paper", ""]
    if params.reduced:
        md += [
            f"Budget `{params.budget}` is reduced (fewer epochs, iterations, seeds or samples; "
            "each part's params file says which), besides the choices below.",
            "",
        ]
    if differences:
        head = ["part", "topic", "paper", "authors' code", "this run"]
        body = [[d["part"], d["topic"], d["paper"], d["code"], d["ours"]] for d in differences]
        md.append(tabulate(body, head, tablefmt="github", disable_numparse=True))
    else:
        md.append("None recorded by the parts.")
    twin = {
        "budget": params.budget,
        "reduced": params.reduced,
        "parts_run": sorted(parts),
        "comparisons": [r.as_dict() for r in rows],
        "not_run": not_run,
        "differences": differences,
        "stage_times": [t.__dict__ for t in stage_times(workdir)],
    }
    return "\n".join(md) + "\n", twin


def metrics(twin: dict[str, Any]) -> dict[str, Any]:
    r"""Reproduced numbers as ``part -> quantity -> {ours, published, delta_std}`` (for DVC)."""
    out: dict[str, dict[str, Any]] = {}
    for c in twin["comparisons"]:
        if c["ours"] is None:
            continue
        row = {"ours": c["ours"], "published": c["paper"]}
        if c["delta_in_published_std"] is not None:
            row["delta_std"] = round(c["delta_in_published_std"], 3)
        out.setdefault(c["part"], {})[c["what"]] = row
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/report.yaml")
    parser.add_argument("--output", default="reports/report.md", help="the Markdown report")
    parser.add_argument("--json", default="reports/report.json", help="its JSON twin")
    parser.add_argument(
        "--metrics", default=None, help="flat part -> quantity -> value file (dvc metrics)"
    )
    parser.add_argument("--workdir", default=".", help="root the parts' paths are relative to")


def run(args: argparse.Namespace) -> int:
    params = load(args.params, ReportParams, section="report")
    output = Path(args.output)
    text, twin = build(params, Path(args.workdir), output.parent)
    atomic_write_text(output, text)
    atomic_write_json(args.json, twin)
    if args.metrics:
        atomic_write_json(args.metrics, metrics(twin))
    print(
        f"report: {len(twin['parts_run'])}/{len(params.parts)} parts, "
        f"{len(twin['comparisons'])} comparisons -> {output}"
    )
    return 0
