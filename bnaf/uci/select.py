r"""``python -m bnaf uci select``: pick one dataset's grid config by validation log-likelihood
(Section 5.3).

For every config of the grid (``L`` x ``H``) the validation log-likelihoods of its seeds are
averaged; the config with the highest mean is selected, and its test log-likelihood is
reported as mean ± std over its seeds (Table 1: "average (±std) across 3 independently trained
models"). The inputs are the explicit list of ``metrics.json`` files the params imply.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json
from bnaf.flows.count import naf_counts
from bnaf.uci.params import load_uci
from bnaf.uci.published import DIMENSIONS, NAF_PUBLISHED, PUBLISHED_RATIOS
from bnaf.uci.results import read_metrics

__all__ = ["add_arguments", "mean_std", "read_metrics", "run", "select"]


def mean_std(values: list[float], ddof: int) -> tuple[float, float | None]:
    r"""Mean and standard deviation with ``ddof`` (0: divide by n; 1: by n - 1); the std is
    None when there are too few values for it."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        raise BnafError("no values to average")
    return float(a.mean()), float(a.std(ddof=ddof)) if len(a) > ddof else None


def _naf_counts(dataset: str) -> dict[str, int] | None:
    r"""NAF-DDSF totals for 5 and 10 flows from our NAF model (``bnaf.flows.naf``), if known."""
    if dataset not in NAF_PUBLISHED:
        return None
    return naf_counts(dataset)


def select(metrics: list[dict[str, Any]], dataset: str, std_ddof: int) -> dict[str, Any]:
    r"""Group runs by config, select by mean validation LL over seeds, summarise the test LL."""
    if not metrics:
        raise BnafError(f"{dataset}: no metrics files to select from")
    configs: dict[str, list[dict[str, Any]]] = {}
    for m in metrics:
        if m["dataset"] != dataset:
            raise BnafError(f"a metrics file of {m['dataset']!r} was given for {dataset!r}")
        configs.setdefault(m["config"], []).append(m)
    budgets = {m["budget"] for m in metrics}
    if len(budgets) != 1:
        raise BnafError(f"{dataset}: metrics from several budgets {sorted(budgets)} mixed")
    summary: dict[str, dict[str, Any]] = {}
    for name, runs in configs.items():
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            raise BnafError(f"{dataset} {name}: seed listed twice in {sorted(seeds)}")
        runs.sort(key=lambda r: r["seed"])
        val = [r["validation"]["log_likelihood"] for r in runs]
        test = [r["test"]["log_likelihood"] for r in runs]
        vm, vs = mean_std(val, std_ddof)
        tm, ts = mean_std(test, std_ddof)
        summary[name] = {
            "layers": runs[0]["layers"],
            "hidden_factor": runs[0]["hidden_factor"],
            "seeds": sorted(seeds),
            "validation_ll": val,
            "test_ll": test,
            "validation_mean": vm,
            "validation_std": vs,
            "test_mean": tm,
            "test_std": ts,
            "parameters": runs[0]["parameters"],
            "best_epochs": [r["best_epoch"] for r in runs],
            "epochs_run": [r["epochs_run"] for r in runs],
            "wall_s": float(sum(r["wall_s"] for r in runs)),
        }
    # Highest mean validation LL; a tie goes to the smaller model.
    selected = max(
        summary, key=lambda c: (summary[c]["validation_mean"], -summary[c]["parameters"]["paper"])
    )
    chosen = summary[selected]
    bnaf_params = chosen["parameters"]["paper"]
    # NAF-DDSF sizes are those of the real datasets: a file of another width (a test fixture)
    # gets no ratio rather than a meaningless one.
    dim = metrics[0]["model"]["dim"]
    naf = _naf_counts(dataset) if DIMENSIONS.get(dataset) == dim else None
    ratios = None
    if naf is not None:
        ratios = {
            "naf5": {"ours": naf["5"] / bnaf_params, "paper": PUBLISHED_RATIOS[dataset][0]},
            "naf10": {"ours": naf["10"] / bnaf_params, "paper": PUBLISHED_RATIOS[dataset][1]},
            "naf_params": naf,
            "naf_params_published": dict(zip(("5", "10"), NAF_PUBLISHED[dataset])),
        }
    # The grid point whose size gives the published ratio (to 2 decimals), if this grid has it.
    inferred = None
    if naf is not None:
        inferred = next(
            (
                c
                for c, s in summary.items()
                if round(NAF_PUBLISHED[dataset][0] / s["parameters"]["paper"], 2)
                == PUBLISHED_RATIOS[dataset][0]
            ),
            None,
        )
    first = metrics[0]
    return {
        "dataset": dataset,
        "dim": dim,
        "budget": first["budget"],
        "reduced": first["reduced"],
        "criterion": "highest mean validation log-likelihood over seeds (Section 5.3)",
        "std_ddof": std_ddof,
        "selected": selected,
        "n_seeds": len(chosen["seeds"]),
        "test_mean": chosen["test_mean"],
        "test_std": chosen["test_std"],
        "validation_mean": chosen["validation_mean"],
        "parameters": chosen["parameters"],
        "ratios": ratios,
        "published_config_by_ratio": inferred,
        "wall_s": float(sum(s["wall_s"] for s in summary.values())),
        "devices": sorted({m["device"] for m in metrics}),
        "hardware": sorted(
            {m.get("hardware") or m["environment"].get("processor") for m in metrics}
        ),
        "train_samples": first["train_samples"],
        "configs": summary,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/uci.yaml")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--metrics", nargs="+", required=True, help="metrics.json of every run")
    parser.add_argument("--out", required=True, help="selection JSON to write")


def run(args: argparse.Namespace) -> int:
    params = load_uci(args.params)
    missing = [p for p in args.metrics if not Path(p).is_file()]
    if missing:
        raise BnafError(f"metrics file(s) not found: {', '.join(missing)}")
    metrics = [read_metrics(p) for p in args.metrics]
    result = select(metrics, args.dataset, params.table.std_ddof)
    result["metrics_files"] = list(args.metrics)
    atomic_write_json(args.out, result)
    std = result["test_std"] or 0.0
    print(
        f"{args.dataset}: selected {result['selected']} "
        f"(validation {result['validation_mean']:.4f}); test {result['test_mean']:.4f} "
        f"± {std:.4f} over {result['n_seeds']} seeds"
    )
    return 0
