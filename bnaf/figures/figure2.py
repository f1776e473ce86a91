r"""Figure 2 (Section 5.1): rows = datasets, columns = Data | Glow | B-NAF.

The data panel is a normalised histogram of fresh samples on the models' grid; the model
panels are ``exp(log p)`` on that grid, from each run's ``grid.npz``.
"""

from __future__ import annotations

import argparse

import numpy as np

from bnaf.config import load
from bnaf.data.toy import sample2d
from bnaf.errors import BnafError
from bnaf.figures.toyplot import crop, draw_panels, read_grids
from bnaf.toy_params import ToyParams

__all__ = ["add_arguments", "run", "LABELS"]

LABELS = {"glow": "Glow", "bnaf": "B-NAF", "planar": "Planar"}


def data_density(target: str, centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    r"""Histogram density of ``n`` samples on the cells centred at ``centres`` (``[i, j]``)."""
    step = centres[1] - centres[0]
    edges = np.append(centres - step / 2, centres[-1] + step / 2)
    x = sample2d(target, n, np.random.default_rng([seed, 2]))
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=(edges, edges))
    return hist / (n * step**2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--grids", nargs="+", required=True, help="grid.npz of each density run")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--data-samples", type=int, default=1_000_000)


def run(args: argparse.Namespace) -> int:
    params = load(args.params, ToyParams, section="toy")
    grids = read_grids(args.grids)
    exp = params.density
    panels = []
    for target in exp.targets:
        missing = [m for m in exp.models if (target, m) not in grids]
        if missing:
            raise BnafError(f"figure2: no grid for {target} x {missing} among --grids")
        centres = grids[(target, exp.models[0])]["centres"]
        row = [
            crop(
                centres,
                data_density(target, centres, args.data_samples, params.seed),
                params.figure_limit,
            )
        ]
        for m in exp.models:
            g = grids[(target, m)]
            row.append(crop(g["centres"], np.exp(g["log_density"]), params.figure_limit))
        panels.append(row)
    labels = ["Data"] + [
        f"Glow ({exp.glow.depth} steps)" if m == "glow" else LABELS[m] for m in exp.models
    ]
    draw_panels(panels, exp.targets, labels, args.out)
    print(f"wrote {args.out}")
    return 0
