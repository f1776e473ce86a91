r"""``python -m bnaf vae table``: Table 2 (Section 5.4), -ELBO and NLL of VAEs with amortised
B-NAF posteriors.

Rows: the paper's (VAE, Planar, IAF, Sylvester, B-NAF; typed from the paper text) and ours
(plain VAE and B-NAF with the params' best shape), mean +- std over seeds, in nats (bits per
dimension for Frey faces), with the difference from the published value in published stds.
The runs are listed from the params file (never a glob); a dataset whose download status says
unavailable is named "not run" with the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json, atomic_write_text, read_json
from bnaf.core.shapes import MapOf
from bnaf.data.images import OMNIGLOT_FILE
from bnaf.data.status import read_status
from bnaf.vae.differences import DIFFERENCES
from bnaf.vae.params import VaeParams, load_vae
from bnaf.vae.published import PAPER_ROWS, TABLE2
from bnaf.vae.runs import RESULTS, VaeRun, config_name, runs

__all__ = ["METRICS_SHAPE", "add_arguments", "metrics_paths", "read_metrics", "run"]

_COLUMNS = ("mnist", "freyfaces", "omniglot", "caltech101")
_TITLES = {"mnist": "MNIST", "freyfaces": "Freyfaces", "omniglot": "Omniglot",
           "caltech101": "Caltech 101"}  # fmt: skip


#: what the table reads from a run's ``metrics.json`` (written by :mod:`bnaf.vae.train`)
METRICS_SHAPE = {
    "part": frozenset({"vae"}),
    "dataset": str,
    "config": str,
    "seed": int,
    "budget": str,
    "unit": frozenset({"nats", "bits/dim"}),
    "test_neg_elbo": float,
    "test_nll": float,
    "valid_neg_elbo": float,
    "nll_samples": int,
    "epochs_run": int,
    "sizes": {"train": int},
    "timing": {"train_wall_s": float, "epoch_cpu_s_mean": float, "test_nll_cpu_s": float},
    "environment": {"device": str},
}
#: what the table reads from ``python -m bnaf vae count --out``
COUNT_SHAPE = {
    "models": {
        k: {"values_per_datapoint": int} for k in ("bnaf", "snf_orthogonal", "snf_householder")
    },
    "paper": {"trainable_ratio": MapOf(float)},
    "trainable_ratio_paper": MapOf(float),
    "differences?": [{"topic": str, "ours": str}],
}


def read_metrics(path: str | Path, run: VaeRun, budget: str) -> dict[str, Any]:
    r"""A run's ``metrics.json``, checked: the keys the table reads (:data:`METRICS_SHAPE`),
    the run the file's folder names, the params' budget, and the unit Table 2 uses for its
    dataset (bits per dimension for Frey faces, nats elsewhere)."""
    m = read_json(path, shape=METRICS_SHAPE)
    found = VaeRun(m["dataset"], m["config"], m["seed"])
    if found != run:
        raise BnafError(f"{path}: holds the run {found.path}, not {run.path}")
    if m["budget"] != budget:
        raise BnafError(f"{path}: a run of the budget {m['budget']!r}, not {budget!r}")
    unit = "bits/dim" if run.dataset == "freyfaces" else "nats"
    if m["unit"] != unit:
        raise BnafError(f"{path}: figures in {m['unit']}; Table 2 gives {run.dataset} in {unit}")
    return m


def metrics_paths(params: VaeParams, results: Path, dataset: str) -> dict[str, list[Path]]:
    """config -> the metrics files of its seeds, as listed by the params (:mod:`bnaf.vae.runs`)."""
    out: dict[str, list[Path]] = {}
    for r, path in _listed(params, results, dataset):
        out.setdefault(r.config, []).append(path)
    return out


def _listed(params: VaeParams, results: Path, dataset: str) -> list[tuple[VaeRun, Path]]:
    return [
        (r, results / Path(r.path).relative_to(RESULTS) / "metrics.json")
        for r in runs(params, [dataset])
    ]


def _stats(values: list[float]) -> tuple[float, float]:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" + ("" if n > 1 else " (n=1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/vae.yaml")
    parser.add_argument("--results", default="results/vae", type=Path)
    parser.add_argument("--status-dir", default="data/raw", type=Path)
    parser.add_argument("--count", type=Path, help="JSON written by vae count --out")
    parser.add_argument("--out", default="reports/table2.md", type=Path)


def _load(params: VaeParams, args: argparse.Namespace) -> tuple[dict, list]:
    runs: dict[str, dict[str, list[dict]]] = {}
    not_run = []
    for d in params.datasets:
        status_path = args.status_dir / f"{d}.status.json"
        status = read_status(status_path, d) if status_path.is_file() else None
        if status is None or not status.get("available"):
            how = f"run: python -m bnaf data download {d}"
            if status:
                how = status.get("how_to_supply", "")
            if d == "omniglot":
                how += (
                    f"; no published checksum of {OMNIGLOT_FILE[0]} is known, so also give its "
                    f"sha256 under checksums: in params/<budget>/data.yaml"
                )
            reason = status.get("reason", "") if status else f"no status file {status_path}"
            not_run.append({"dataset": d, "reason": reason, "how_to_supply": how})
            continue
        runs[d] = {}
        listed = _listed(params, args.results, d)
        missing = [str(p) for _, p in listed if not p.is_file()]
        if missing:
            raise BnafError(f"table2: missing results {', '.join(missing)}")
        for r, p in listed:
            runs[d].setdefault(r.config, []).append(read_metrics(p, r, params.budget))
    for d in _COLUMNS:
        if d not in params.datasets:
            not_run.append(
                {"dataset": d, "reason": "not in the params' datasets", "how_to_supply": ""}
            )
    return runs, not_run


def run(args: argparse.Namespace) -> int:
    params = load_vae(args.params)
    runs, not_run = _load(params, args)
    ours = {"VAE": "vae", "B-NAF": config_name(params.best)}
    cells: dict[str, dict[str, Any]] = {}
    header = ["Model"] + [f"{_TITLES[d]} {m}" for d in _COLUMNS for m in ("-ELBO", "NLL")]
    rows = []
    for model in PAPER_ROWS:
        rows.append([f"{model} (paper)"] + [
            f"{v[0]:.2f} ± {v[1]:.2f}" for d in _COLUMNS for v in TABLE2[model][d]
        ])  # fmt: skip
    delta_rows = []
    for label, config in ours.items():
        if not params.plain_vae and config == "vae":
            continue
        name = label if config == label.lower() else f"{label} {config.removeprefix('bnaf-')}"
        row, drow = [f"{name} (ours, {params.budget})"], [f"{label} (ours) − paper"]
        for d in _COLUMNS:
            for k, key in enumerate(("test_neg_elbo", "test_nll")):
                if d not in runs:
                    row.append("not run")
                    drow.append("")
                    continue
                vals = [m[key] for m in runs[d][config]]
                mean, std = _stats(vals)
                ref, ref_std = TABLE2[label][d][k]
                z = (mean - ref) / ref_std
                cells.setdefault(config, {}).setdefault(d, {})[key] = {
                    "mean": mean, "std": std, "n": len(vals), "values": vals,
                    "paper": ref, "paper_std": ref_std, "diff_in_paper_std": z,
                    "unit": runs[d][config][0]["unit"],
                }  # fmt: skip
                row.append(_cell(mean, std, len(vals)))
                drow.append(f"{z:+.1f}σ")
        rows.append(row)
        delta_rows.append(drow)
    grid = _grid(params, runs)
    timing = _timing(runs)
    counts = None
    if args.count and args.count.is_file():
        counts = read_json(args.count, shape=COUNT_SHAPE)
    md = _markdown(params, header, rows, delta_rows, grid, timing, not_run, counts)
    atomic_write_text(args.out, md)
    atomic_write_json(
        args.out.with_suffix(".json"),
        {
            "table": "table2",
            "budget": params.budget,
            "reduced": params.budget != "paper",
            "unit": "nats; bits/dim for freyfaces",
            "paper": TABLE2,
            "ours": cells,
            # each row's run folders, for the report's learning curves
            "runs": {
                c: {
                    d: [str(p.parent) for p in metrics_paths(params, args.results, d)[c]]
                    for d in runs
                }
                for c in cells
            },
            "grid": grid,
            "timing": timing,
            "counts": counts,
            "not_run": not_run,
            "differences": DIFFERENCES + (counts or {}).get("differences", []),
        },
    )
    print(md)
    return 0


def _grid(params: VaeParams, runs: dict) -> dict[str, Any]:
    d = params.grid_dataset
    if d not in runs:
        return {}
    out = {}
    for config, metrics in runs[d].items():
        if config == "vae":
            continue
        out[config] = {
            k: _stats([m[k] for m in metrics])[0]
            for k in ("valid_neg_elbo", "test_neg_elbo", "test_nll")
        }
    best = min(out, key=lambda c: out[c]["valid_neg_elbo"]) if out else None
    return {"dataset": d, "configs": out, "best_on_validation": best,
            "used_for_other_datasets": config_name(params.best)}  # fmt: skip


def _timing(runs: dict) -> dict[str, Any]:
    out = {}
    for d, configs in runs.items():
        for config, metrics in configs.items():
            t = [m["timing"] for m in metrics]
            out[f"{d}/{config}"] = {
                "train_wall_s_total": sum(x["train_wall_s"] for x in t),
                "epoch_cpu_s_mean": float(np.mean([x["epoch_cpu_s_mean"] for x in t])),
                "nll_cpu_s_mean": float(np.mean([x["test_nll_cpu_s"] for x in t])),
                "nll_samples": metrics[0]["nll_samples"],
                "epochs_run": [m["epochs_run"] for m in metrics],
                "train_size": metrics[0]["sizes"]["train"],
                "device": metrics[0]["environment"]["device"],
            }
    return out


def _markdown(params, header, rows, delta_rows, grid, timing, not_run, counts) -> str:
    lines = ["# Table 2: VAEs with amortised B-NAF posteriors (Section 5.4)", ""]
    if params.budget != "paper":
        lines += [f"**Reduced budget `{params.budget}`** (subsets, few epochs, few importance "
                  "samples): our numbers are not comparable with the paper's.", ""]  # fmt: skip
    lines += ["Test -ELBO and NLL (importance sampling), mean ± std over seeds "
              f"{params.seeds}; nats, bits/dim for Freyfaces.", ""]  # fmt: skip
    lines += [tabulate(rows, header, tablefmt="github"), ""]
    lines += ["Difference of our means from the published means, in published stds:", ""]
    lines += [tabulate(delta_rows, header, tablefmt="github"), ""]
    if grid:
        g = [[c, v["valid_neg_elbo"], v["test_neg_elbo"], v["test_nll"]]
             for c, v in grid["configs"].items()]  # fmt: skip
        lines += [f"Grid on {grid['dataset']} (means over seeds); best on validation: "
                  f"`{grid['best_on_validation']}`; used for the other datasets: "
                  f"`{grid['used_for_other_datasets']}` (the paper's best).", ""]  # fmt: skip
        lines += [tabulate(g, ["config", "valid -ELBO", "test -ELBO", "test NLL"],
                           tablefmt="github", floatfmt=".2f"), ""]  # fmt: skip
    t = [[k, f"{v['train_wall_s_total']:.0f}", f"{v['epoch_cpu_s_mean']:.1f}",
          f"{v['nll_cpu_s_mean']:.1f} (S={v['nll_samples']})", v["train_size"], v["device"]]
         for k, v in timing.items()]  # fmt: skip
    lines += ["Budget and time (train wall time summed over seeds; CPU seconds per epoch and "
              "per test-set NLL evaluation):", ""]  # fmt: skip
    lines += [tabulate(t, ["run", "train wall s", "CPU s/epoch", "NLL CPU s", "train size",
                           "device"], tablefmt="github"), ""]  # fmt: skip
    if counts:
        m, p = counts["models"], counts["paper"]
        c = [
            ["values predicted per datapoint, B-NAF", m["bnaf"]["values_per_datapoint"], "7.7k"],
            ["... orthogonal SNF", m["snf_orthogonal"]["values_per_datapoint"], "50.7k"],
            ["... Householder SNF", m["snf_householder"]["values_per_datapoint"], "76.8k"],
            *[[f"fewer trainable flow parameters than {k}",
               f"{counts['trainable_ratio_paper'][k]:.2f}x", f"{v}x"]
              for k, v in p["trainable_ratio"].items()],
        ]  # fmt: skip
        lines += ["Counting claims of Section 5.4 (`python -m bnaf vae count`):", ""]
        lines += [tabulate(c, ["quantity", "ours", "paper"], tablefmt="github"), ""]
    if not_run:
        lines += ["Not run:", ""]
        lines += [f"- {n['dataset']}: {n['reason']}. {n['how_to_supply']}" for n in not_run]
        lines += [""]
    lines += ["Differences from the paper / Sylvester code:", ""]
    extra = (counts or {}).get("differences", [])
    lines += [f"- {x['topic']}: {x['ours']}" for x in DIFFERENCES + extra]
    return "\n".join(lines) + "\n"
