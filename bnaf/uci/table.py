r"""``python -m bnaf uci table``: Table 1 of the paper with our reproduced B-NAF row (Section 5.3).

Rows: the published baselines and B-NAF as printed in the paper, our B-NAF (test
log-likelihood of the selected config, mean ± std over its seeds), the difference from the
published B-NAF value in published standard deviations, the selected configs, and the
parameter ratios NAF-DDSF(5 or 10 flows) / B-NAF for those configs beside the published ones.
Built only from the selection files (one per dataset) and the download status files given on
the command line; a dataset without a selection is listed as not run, with the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json, atomic_write_text
from bnaf.data.status import read_status
from bnaf.uci.differences import UCI_DIFFERENCES
from bnaf.uci.params import load_uci
from bnaf.uci.published import (
    DATASETS,
    DIMENSIONS,
    MODELS,
    PUBLISHED_RATIOS,
    RATIO_CONFIGS,
    SIZES,
    TABLE1,
)
from bnaf.uci.results import read_selection
from bnaf.uci.runs import UciRun, config_name

__all__ = ["assemble", "render", "add_arguments", "run"]

_DASH = "—"


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _not_run(dataset: str, datasets: list[str], status: dict[str, dict[str, Any]]) -> dict:
    if dataset not in datasets:
        return {
            "dataset": dataset,
            "reason": "not in this budget's datasets (params uci.datasets)",
        }
    st = status.get(dataset)
    if st is not None and not st.get("available", False):
        out = {"dataset": dataset, "reason": st.get("reason") or "data unavailable"}
        if st.get("how_to_supply"):
            out["how_to_supply"] = st["how_to_supply"]
        return out
    return {"dataset": dataset, "reason": "no selection file was given for it (not requested)"}


def assemble(
    selections: list[dict[str, Any]],
    status: list[dict[str, Any]],
    datasets: list[str],
    budget: str,
    reduced: bool,
    std_ddof: int,
) -> dict[str, Any]:
    r"""The JSON twin: per-dataset results with their published counterparts, not-run list."""
    by_name = {s["dataset"]: s for s in selections}
    unknown = sorted(set(by_name) - set(DATASETS))
    if unknown:
        raise BnafError(f"Table 1 has no column for dataset(s) {', '.join(unknown)}")
    for s in selections:
        if s["budget"] != budget:
            raise BnafError(f"{s['dataset']}: selection of budget {s['budget']!r}, not {budget!r}")
        if s["std_ddof"] != std_ddof:
            raise BnafError(f"{s['dataset']}: selection used ddof={s['std_ddof']}, not {std_ddof}")
    status_by = {s["dataset"]: s for s in status}
    results, not_run = [], []
    for d in DATASETS:
        if d not in by_name:
            not_run.append(_not_run(d, datasets, status_by))
            continue
        s = by_name[d]
        pub_mean, pub_std = TABLE1["B-NAF"][d]
        ratios = s.get("ratios") or {}
        results.append(
            {
                "dataset": d,
                "test_ll": {
                    "ours": {"mean": s["test_mean"], "std": s["test_std"], "n": s["n_seeds"]},
                    "paper": {"mean": pub_mean, "std": pub_std},
                },
                "delta_in_published_std": (s["test_mean"] - pub_mean) / pub_std,
                "selected_config": s["selected"],
                # its runs' folders, for the report's learning curves
                "runs": [
                    UciRun(d, s["selected"], k).path for k in s["configs"][s["selected"]]["seeds"]
                ],
                "published_config_by_ratio": s.get("published_config_by_ratio"),
                "parameters": s["parameters"],
                "ratio_naf5": ratios.get("naf5"),
                "ratio_naf10": ratios.get("naf10"),
                "wall_s": s["wall_s"],
                "devices": s["devices"],
                "hardware": s["hardware"],
                "train_samples": s["train_samples"],
                "grid": {
                    c: {k: v[k] for k in ("validation_mean", "test_mean", "test_std", "seeds")}
                    for c, v in s["configs"].items()
                },
            }
        )
    return {
        "table": "table1",
        "title": "Table 1: test log-likelihood (nats, higher is better) on UCI and BSDS300",
        "budget": budget,
        "reduced": reduced,
        "std_ddof": std_ddof,
        "units": "nats per test sample; mean ± std over seeds",
        "results": results,
        "published": {m: {d: list(v) for d, v in TABLE1[m].items()} for m in MODELS},
        "published_ratios": {d: list(v) for d, v in PUBLISHED_RATIOS.items()},
        "paper_configs_by_ratio": {d: _paper_config(d) for d in DATASETS},
        "not_run": not_run,
        "differences": UCI_DIFFERENCES,
    }


def _rows(table: dict[str, Any]) -> list[list[str]]:
    ours = {r["dataset"]: r for r in table["results"]}

    def row(label: str, cell: Any) -> list[str]:
        return [label] + [cell(ours[d]) if d in ours else _DASH for d in DATASETS]

    def ratio(key: str) -> Any:
        # n/a: the data's width is not the dataset's d, so NAF-DDSF's size does not apply.
        return lambda r: f"{r[key]['ours']:.2f}×" if r.get(key) else "n/a"

    def published_ratio(flows: int) -> list[str]:
        return [f"{PUBLISHED_RATIOS[d][flows == 10]:.2f}×" for d in DATASETS]

    label = f"B-NAF (ours, {table['budget']}{', REDUCED' if table['reduced'] else ''})"
    rows = [[m] + [_pm(*TABLE1[m][d]) for d in DATASETS] for m in MODELS]
    rows[-1][0] = "B-NAF (published)"
    rows += [
        [label]
        + [
            _pm(ours[d]["test_ll"]["ours"]["mean"], ours[d]["test_ll"]["ours"]["std"])
            if d in ours
            else "not run"
            for d in DATASETS
        ],
        row("(ours − published) / published std", lambda r: f"{r['delta_in_published_std']:+.1f}"),
        row("Selected config (ours)", lambda r: r["selected_config"]),
        ["Paper's config (from its ratio)", *(_paper_config(d) for d in DATASETS)],
        ["NAF(5) / B-NAF, published", *published_ratio(5)],
        row("NAF(5) / B-NAF, ours", ratio("ratio_naf5")),
        ["NAF(10) / B-NAF, published", *published_ratio(10)],
        row("NAF(10) / B-NAF, ours", ratio("ratio_naf10")),
    ]
    return rows


def _paper_config(dataset: str) -> str:
    r"""The grid point whose size gives the published NAF/B-NAF ratio (:data:`RATIO_CONFIGS`)."""
    layers, hidden = RATIO_CONFIGS[dataset]
    inside = layers in (1, 2) and hidden in (10, 20, 40)  # Section 5.3's grid
    return config_name(layers, hidden) + ("" if inside else " (outside the stated grid)")


def _grid_rows(table: dict[str, Any]) -> list[list[str]]:
    ours = {r["dataset"]: r for r in table["results"]}
    configs = sorted({c for r in ours.values() for c in r["grid"]})
    rows = []
    for c in configs:
        row = [c]
        for d in DATASETS:
            cell = ours[d]["grid"].get(c) if d in ours else None
            text = _DASH if cell is None else f"{cell['validation_mean']:.2f}"
            row.append(f"**{text}**" if d in ours and ours[d]["selected_config"] == c else text)
        rows.append(row)
    return rows


def _header() -> list[str]:
    return ["Model"] + [f"{d.upper()} (d={DIMENSIONS[d]}, N={SIZES[d]:,})" for d in DATASETS]


def render(table: dict[str, Any]) -> tuple[str, str]:
    r"""(Markdown, CSV) of the table; notes on budget, std, hardware and time below it."""
    rows = _rows(table)
    md = [
        f"# {table['title']}",
        "",
        tabulate(rows, _header(), tablefmt="github", disable_numparse=True),
        "",
        f"- Budget: `{table['budget']}`"
        + (
            " — REDUCED (fewer epochs, a smaller grid and/or a training subset): not comparable "
            "with the paper's numbers as is."
            if table["reduced"]
            else " — the paper's settings (Section 5.3)."
        ),
        f"- ± is the standard deviation over seeds with ddof={table['std_ddof']} "
        f"({'divide by n' if table['std_ddof'] == 0 else 'divide by n - 1'}); the selected "
        "config is the one with the highest mean validation log-likelihood over its seeds.",
        "- Log-likelihoods are exact per-sample means over the whole test split (nats).",
    ]
    for r in table["results"]:
        md.append(
            f"- {r['dataset'].upper()}: {r['wall_s'] / 60:.1f} min of training and evaluation "
            f"(summed over all runs of the grid), on {', '.join(r['hardware'])} "
            f"({', '.join(r['devices'])}); {r['train_samples']:,} training samples."
        )
    for n in table["not_run"]:
        supply = f" To supply it: {n['how_to_supply']}" if n.get("how_to_supply") else ""
        md.append(f"- Not run: {n['dataset'].upper()} — {n['reason']}.{supply}")
    md.append("- Differences between the paper and the authors' code: see `differences` in the "
              "JSON twin (this reproduction follows the code).")  # fmt: skip
    grid = _grid_rows(table)
    if grid:
        md += [
            "",
            "## Grid search: validation log-likelihood, mean over seeds (selected in bold)",
            "",
            tabulate(
                grid, ["Config", *(d.upper() for d in DATASETS)], "github", disable_numparse=True
            ),
        ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([_header(), *rows])
    return "\n".join(md) + "\n", buf.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/uci.yaml")
    parser.add_argument("--selections", nargs="*", default=[], help="results/uci/*/selection.json")
    parser.add_argument("--status", nargs="*", default=[], help="data/raw/<name>.status.json")
    parser.add_argument("--md", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--csv", required=True)


def run(args: argparse.Namespace) -> int:
    params = load_uci(args.params)
    missing = [p for p in [*args.selections, *args.status] if not Path(p).is_file()]
    if missing:
        raise BnafError(f"input file(s) not found: {', '.join(missing)}")
    table = assemble(
        [read_selection(p) for p in args.selections],
        [read_status(p) for p in args.status],
        params.datasets,
        params.budget,
        params.reduced,
        params.table.std_ddof,
    )
    table["selection_files"] = list(args.selections)
    md, text = render(table)
    atomic_write_text(args.csv, text)
    atomic_write_text(args.md, md)
    atomic_write_json(args.json, table)  # last: the JSON twin is the part's commit point
    print(f"wrote {args.md}: {len(table['results'])} dataset(s) run, {len(table['not_run'])} not")
    return 0
