r"""``python -m bnaf toy figure``: Figures 2 and 3 of the paper from the toy runs' ``grid.npz``.

- ``figure2`` (Section 5.1): rows = datasets, columns = Data | Glow | B-NAF. The data panel is a
  normalised histogram of fresh samples on the models' grid.
- ``figure3`` (Section 5.2): rows = U1..U4, columns = Target | Planar (K=32) | B-NAF. The target
  panel is ``exp(-U - confinement) / Z``.

Model panels are ``exp(log p)`` on the run's grid (exact ``q`` of the samplers by inversion,
:mod:`bnaf.toy.evaluate`).
"""

from __future__ import annotations

import argparse

import numpy as np

from bnaf.core.errors import BnafError
from bnaf.data.toy import sample2d
from bnaf.toy.params import load_toy
from bnaf.toy.plot import crop, draw_panels, read_grids
from bnaf.toy.runs import FIGURES

__all__ = ["LABELS", "add_arguments", "data_density", "run"]

LABELS = {"glow": "Glow", "bnaf": "B-NAF", "planar": "Planar"}


def data_density(target: str, centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    r"""Histogram density of ``n`` samples on the cells centred at ``centres`` (``[i, j]``)."""
    step = centres[1] - centres[0]
    edges = np.append(centres - step / 2, centres[-1] + step / 2)
    x = sample2d(target, n, np.random.default_rng([seed, 2]))
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=(edges, edges))
    return hist / (n * step**2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--figure", required=True, choices=sorted(FIGURES))
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--grids", nargs="+", required=True, help="grid.npz of each run")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--data-samples", type=int, default=1_000_000, help="figure2's data")


def run(args: argparse.Namespace) -> int:
    params = load_toy(args.params)
    grids = read_grids(args.grids)
    kind = FIGURES[args.figure]
    exp = params.experiment(kind)
    panels = []
    for target in exp.targets:
        missing = [m for m in exp.models if (target, m) not in grids]
        if missing:
            raise BnafError(f"{args.figure}: no grid for {target} x {missing} among --grids")
        first = grids[(target, exp.models[0])]
        centres = first["centres"]
        if kind == "density":
            reference = data_density(target, centres, args.data_samples, params.seed)
        else:
            reference = np.exp(first["log_target"])
        row = [crop(centres, reference, params.figure_limit)]
        for m in exp.models:
            g = grids[(target, m)]
            row.append(crop(g["centres"], np.exp(g["log_density"]), params.figure_limit))
        panels.append(row)
    if kind == "density":
        first_label = "Data"
        names = {**LABELS, "glow": f"Glow ({exp.glow.depth} steps)"}
    else:
        first_label = "Target"
        names = {**LABELS, "planar": f"Planar (K={exp.planar.flows})"}
    draw_panels(panels, exp.targets, [first_label, *(names[m] for m in exp.models)], args.out)
    print(f"wrote {args.out}")
    return 0
