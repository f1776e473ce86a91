r"""Figure 3 (Section 5.2): rows = U1..U4, columns = Target | Planar (K=32) | B-NAF.

Every panel is a density on the run's grid: the target ``exp(-U - confinement) / Z`` and the
models' exact ``q`` (by inversion, :mod:`bnaf.toy_eval`), from each run's ``grid.npz``.
"""

from __future__ import annotations

import argparse

import numpy as np

from bnaf.config import load
from bnaf.errors import BnafError
from bnaf.figures.toyplot import crop, draw_panels, read_grids
from bnaf.toy_params import ToyParams

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--grids", nargs="+", required=True, help="grid.npz of each energy run")
    parser.add_argument("--out", required=True, help="output PNG")


def run(args: argparse.Namespace) -> int:
    params = load(args.params, ToyParams, section="toy")
    grids = read_grids(args.grids)
    exp = params.energy
    panels = []
    for target in exp.targets:
        missing = [m for m in exp.models if (target, m) not in grids]
        if missing:
            raise BnafError(f"figure3: no grid for {target} x {missing} among --grids")
        first = grids[(target, exp.models[0])]
        row = [crop(first["centres"], np.exp(first["log_target"]), params.figure_limit)]
        for m in exp.models:
            g = grids[(target, m)]
            row.append(crop(g["centres"], np.exp(g["log_density"]), params.figure_limit))
        panels.append(row)
    labels = ["Target"] + [
        f"Planar (K={exp.planar.flows})" if m == "planar" else "B-NAF" for m in exp.models
    ]
    draw_panels(panels, exp.targets, labels, args.out)
    print(f"wrote {args.out}")
    return 0
