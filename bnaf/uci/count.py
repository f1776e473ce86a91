r"""``python -m bnaf uci count``: B-NAF against NAF-DDSF parameter counts and their ratios
(Table 1, bottom rows; Section 5.3)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.flows.count import bnaf_counts, naf_counts
from bnaf.uci.published import NAF_PUBLISHED, PUBLISHED_RATIOS, RATIO_CONFIGS, RATIO_DIFFERENCES

__all__ = ["add_arguments", "count_report", "run"]


def count_report(
    dataset: str | None,
    layers: int,
    hidden_factor: int,
    flows: int = 5,
    dim: int | None = None,
) -> dict[str, Any]:
    r"""B-NAF counts and, for a dataset, the NAF-DDSF counts and the ratios NAF/B-NAF
    (paper convention, as the authors computed them: non-zero weight entries + all vectors).

    Arguments:
        dataset: one of :data:`NAF_PUBLISHED`, or ``None`` with ``dim`` for B-NAF only.
        layers: B-NAF hidden layers ``L`` per flow.
        hidden_factor: ``k`` with ``H = k d``.
        flows: B-NAF flows.
        dim: the data dimension when no dataset is given.
    """
    from bnaf.flows.naf import NAF_CONFIGS

    if (dataset is None) == (dim is None):
        raise BnafError("give exactly one of --dataset and --dim")
    if dataset is not None and dataset not in NAF_CONFIGS:
        raise BnafError(f"unknown dataset {dataset!r}; expected one of {sorted(NAF_CONFIGS)}")
    if dim is None:
        dim = NAF_CONFIGS[dataset][0]
    if min(dim, layers, hidden_factor, flows) < 1:
        raise BnafError("--dim, --layers, --hidden-factor and --flows must be >= 1")
    counts = bnaf_counts(dim, layers, hidden_factor, flows)
    report: dict[str, Any] = {
        "dataset": dataset,
        "dim": dim,
        "flows": flows,
        "layers": layers,
        "hidden_factor": hidden_factor,
        "hidden_units": hidden_factor * dim,
        "bnaf_params": counts,
    }
    if dataset is None:
        return report
    naf = naf_counts(dataset)
    report["naf_params"] = naf
    report["naf_params_published"] = dict(zip(("5", "10"), NAF_PUBLISHED[dataset]))
    report["ratio_naf5_bnaf"] = naf["5"] / counts["paper"]
    report["ratio_naf10_bnaf"] = naf["10"] / counts["paper"]
    report["ratios_published"] = dict(zip(("5", "10"), PUBLISHED_RATIOS[dataset]))
    layers_pub, k_pub = RATIO_CONFIGS[dataset]
    report["published_ratio_config"] = {"layers": layers_pub, "hidden_factor": k_pub}
    report["differences"] = [
        "NAF-DDSF is counted over every stored entry (masked MADE weights and the weights of "
        "its constant context input included), as the authors' NAF sizes are",
        *([RATIO_DIFFERENCES[dataset]] if dataset in RATIO_DIFFERENCES else []),
    ]
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset", help="power, gas, hepmass, miniboone or bsds300")
    where.add_argument("--dim", type=int, help="data dimension d (B-NAF counts only)")
    parser.add_argument("--layers", type=int, required=True, help="hidden layers L per flow")
    parser.add_argument(
        "--hidden-factor", type=int, required=True, help="hidden units per dimension (H = k d)"
    )
    parser.add_argument("--flows", type=int, default=5, help="B-NAF flows (Section 5.3: 5)")


def run(args: argparse.Namespace) -> int:
    report = count_report(args.dataset, args.layers, args.hidden_factor, args.flows, args.dim)
    print(json.dumps(report, indent=2))
    return 0
