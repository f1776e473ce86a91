r"""``python -m bnaf toy table``: the toy experiments' numbers (Sections 5.1-5.2) as Markdown +
JSON.

Built from the explicit list of ``metrics.json`` files the workflow derives from params.
The paper prints no numbers for these experiments (only Figures 2-3); we report per-sample
test log-likelihoods beside the best achievable value where the data density is known, and
``KL(q || p)`` and target-mass coverage for the energies.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bnaf.core.config import to_dict
from bnaf.core.io import atomic_write_json, atomic_write_text
from bnaf.toy.differences import DIFFERENCES
from bnaf.toy.params import ToyParams, load_toy
from bnaf.toy.results import load_reference, read_metrics

__all__ = ["MOVED_SE", "add_arguments", "build", "compare", "load_reference", "run"]

#: a number has moved from the reference when the two differ by more than this many combined
#: standard errors (sqrt(se_new^2 + se_ref^2)); the standard errors are those of the Monte
#: Carlo evaluation, so a flag means the trained model itself changed (with the same seed and
#: code, the CPU run repeats the reference exactly)
MOVED_SE = 3.0

COVERAGE_CAPTION = (
    "Coverage: the fraction of the target's mass (on the evaluation grid) that lies inside the "
    "model's {level:.0%} highest-density region, i.e. the smallest set of grid cells holding "
    "{level:.0%} of the model's mass; a model equal to the target scores {level:.2f}, a model "
    "that misses a mode of mass m scores about {level:.2f} - m."
)


def _budget_row(m: dict[str, Any]) -> dict[str, Any]:
    cfg = m["config"]
    opt = cfg["optimiser"]
    size = {k: cfg[k] for k in ("flows", "layers", "hidden_factor", "depth", "hidden") if k in cfg}
    return {
        "kind": m["kind"],
        "model": m["model"],
        **size,
        "optimiser": opt["name"],
        "lr": opt["lr"],
        "iterations": opt["iterations"],
        "batch": opt["batch_size"],
    }


def compare(twin: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]]:
    r"""Each number of ``twin`` beside the same (target, model) in ``reference``: test
    log-likelihood (Section 5.1) and KL (Section 5.2), the difference and whether it exceeds
    :data:`MOVED_SE` combined standard errors."""
    out = []
    for kind, key, metric in (
        ("density", "dataset", "log_likelihood"),
        ("energy", "energy", "kl"),
    ):
        ref_rows = {(r[key], r["model"]): r[metric] for r in reference.get(kind, [])}
        for row in twin[kind]:
            new, ref = row[metric], ref_rows.get((row[key], row["model"]))
            entry = {"kind": kind, "target": row[key], "model": row["model"], "metric": metric}
            entry["new"] = new
            entry["reference"] = ref
            if ref is None:
                entry.update(difference=None, combined_se=None, moved=None)
            else:
                se = (new["se"] ** 2 + ref["se"] ** 2) ** 0.5
                diff = new["mean"] - ref["mean"]
                entry.update(difference=diff, combined_se=se, moved=abs(diff) > MOVED_SE * se)
            out.append(entry)
    return out


def _comparison_md(rows: list[dict[str, Any]], reference: dict[str, Any]) -> list[str]:
    table = []
    for r in rows:
        ref = r["reference"]
        table.append(
            [
                r["target"],
                r["model"],
                r["metric"].replace("log_likelihood", "test log-likelihood"),
                f"{r['new']['mean']:.3f} ± {r['new']['se']:.3f}",
                "—" if ref is None else f"{ref['mean']:.3f} ± {ref['se']:.3f}",
                "—" if ref is None else f"{r['difference']:+.3f}",
                "not in reference" if ref is None else ("MOVED" if r["moved"] else "ok"),
            ]
        )
    prov = reference.get("provenance")
    source = reference.get("source", "reference/paper-toy/toy.json")
    made = (
        f"commit {prov.get('commit', '?')}, {prov.get('date', '?')}, {prov.get('hardware', '?')}"
        if isinstance(prov, dict)
        else "no provenance.json beside it"
    )
    return [
        f"## Against the committed reference (`{source}`)",
        "",
        tabulate(
            table,
            ["target", "model", "metric", "this run", "reference", "difference", "status"],
            "github",
        ),
        "",
        f"MOVED: the difference exceeds {MOVED_SE:g} combined standard errors of the two Monte "
        f"Carlo evaluations. Reference: {made}.",
        "",
    ]


def build(
    params: ToyParams,
    density: list[dict],
    energy: list[dict],
    reference: dict[str, Any] | None = None,
) -> tuple[str, dict]:
    r"""The Markdown table and its JSON twin; with ``reference`` (the committed paper-budget
    table) and a paper-budget run, also each number beside the reference's."""
    d_rows, e_rows, budgets, seen = [], [], [], set()
    for m in density:
        t, best = m["test"], m["test"]["best_achievable"]
        d_rows.append(
            {
                "dataset": m["target"],
                "model": m["model"],
                "log_likelihood": {"mean": t["log_likelihood"], "se": t["log_likelihood_se"]},
                "best_achievable": None
                if best is None
                else {"mean": best["value"], "se": best["se"], "method": best["method"]},
                "gap_to_best": None if best is None else best["value"] - t["log_likelihood"],
                "test_samples": t["samples"],
                "seed": m["seed"],
                "wall_time_s": m["wall_time_s"],
                "parameters": m["parameters"],
                "run": m.get("run"),
            }
        )
    for m in energy:
        t = m["test"]
        e_rows.append(
            {
                "energy": m["target"],
                "model": m["model"],
                "kl": {"mean": t["kl"], "se": t["kl_se"]},
                "log_z": t["log_z"],
                "coverage": t["coverage"],
                "coverage_level": t["coverage_level"],
                "kl_samples": t["samples"],
                "seed": m["seed"],
                "wall_time_s": m["wall_time_s"],
                "parameters": m["parameters"],
                "run": m.get("run"),
            }
        )
    for m in density + energy:
        if (m["kind"], m["model"]) not in seen:
            seen.add((m["kind"], m["model"]))
            budgets.append(_budget_row(m))

    def pm(v: dict | None, digits: int = 3) -> str:
        return "—" if v is None else f"{v['mean']:.{digits}f} ± {v['se']:.{digits}f}"

    reduced = params.budget != "paper"
    md = [
        f"# Toy experiments (Sections 5.1-5.2) — budget `{params.budget}`"
        + (" (REDUCED: fewer iterations than the paper)" if reduced else ""),
        "",
    ]
    md += ["## Density estimation (Section 5.1): test log-likelihood (nats, higher is better)", ""]
    md.append(
        tabulate(
            [
                [
                    r["dataset"],
                    r["model"],
                    pm(r["log_likelihood"]),
                    pm(r["best_achievable"], 4),
                    "—" if r["gap_to_best"] is None else f"{r['gap_to_best']:.3f}",
                ]
                for r in d_rows
            ],
            ["dataset", "model", "test log-likelihood", "best achievable", "gap"],
            "github",
        )
    )
    md += [
        "",
        "Per-sample means ± standard errors over fresh samples; best achievable = the "
        "data's negative entropy (8gaussians: quadrature; checkerboard: log(1/32)); "
        "— where it has no closed form.",
        "",
    ]
    md += ["## Energy matching (Section 5.2): KL(q || p) (nats, lower is better)", ""]
    md.append(
        tabulate(
            [
                [r["energy"], r["model"], pm(r["kl"]), f"{r['log_z']:.4f}", f"{r['coverage']:.3f}"]
                for r in e_rows
            ],
            ["energy", "model", "KL(q || p)", "log Z", "coverage"],
            "github",
        )
    )
    level = params.energy.coverage_level
    caption = COVERAGE_CAPTION.format(level=level)
    md += [
        "",
        "KL by Monte Carlo over samples of q (mean ± standard error), with log Z of "
        f"exp(-U - confinement) by quadrature on a grid. {caption}",
        "",
    ]
    md += ["## Budget", "", tabulate(budgets, "keys", "github"), ""]
    md += ["## Paper vs code vs ours", ""]
    md += [
        f"- **{d['topic']}**: paper: {d['paper']}; code: {d['code']}; ours: {d['ours']}"
        for d in DIFFERENCES
    ]
    twin = {
        "part": "toy",
        "budget": params.budget,
        "reduced": reduced,
        "density": d_rows,
        "energy": e_rows,
        "budget_settings": budgets,
        "coverage_definition": COVERAGE_CAPTION.format(level=level),
        "params": to_dict(params),
        "differences": DIFFERENCES,
        "not_run": []
        if not reduced
        else [
            {
                "what": "paper budget",
                "reason": f"budget `{params.budget}` trains for fewer "
                "iterations than the paper; run with --config params=params/paper",
            }
        ],
    }
    if reference is not None and not reduced:
        rows = compare(twin, reference)
        twin["reference_comparison"] = {"moved_se": MOVED_SE, "rows": rows}
        at = md.index("## Budget")
        md[at:at] = _comparison_md(rows, reference)
    return "\n".join(md) + "\n", twin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--density", nargs="*", default=[], help="metrics.json of density runs")
    parser.add_argument("--energy", nargs="*", default=[], help="metrics.json of energy runs")
    parser.add_argument("--md", required=True, help="output Markdown")
    parser.add_argument("--json", required=True, help="output JSON twin")
    parser.add_argument(
        "--reference",
        default=None,
        help="committed paper-budget table to compare with (default: toy.reference of the "
        "params); used at the paper budget only",
    )


def run(args: argparse.Namespace) -> int:
    params = load_toy(args.params)
    path = args.reference or params.reference
    compared = path is not None and params.budget == "paper"
    # no file yet: the first paper-budget run, or a refresh (README: delete, run, copy); said
    # in the table, not an error. A file that is there but unreadable is an error.
    missing = compared and not Path(path).exists()
    reference = load_reference(path) if compared and not missing else None
    md, twin = build(
        params,
        read_metrics(args.density, "density", params.budget),
        read_metrics(args.energy, "energy", params.budget),
        reference,
    )
    if missing:
        twin["reference_comparison"] = {"missing": str(path)}
        note = f"No reference at `{path}`: nothing compared (a first run or a refresh).\n"
        at = md.index("## Budget")
        md = md[:at] + "## Against the committed reference\n\n" + note + "\n" + md[at:]
    atomic_write_text(args.md, md)
    atomic_write_json(args.json, twin)  # last: the JSON twin is the part's commit point
    print(f"wrote {args.md} and {args.json}")
    return 0
