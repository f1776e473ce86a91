r"""Samples of the Figure 2 B-NAF models (beyond the paper): rows = datasets, columns =
B-NAF density | B-NAF samples.

The density panel is ``exp(log p)`` from each run's ``grid.npz``; the samples panel is a
normalised histogram of ``n`` samples drawn by inverting base draws (``bnaf.inverse.sample``),
drawn the same way (x right, y up; see :mod:`bnaf.figures.toyplot`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bnaf.config import load
from bnaf.errors import BnafError
from bnaf.figures.toyplot import crop, draw_panels, read_grids
from bnaf.flow import load_flow
from bnaf.sampling import sample

__all__ = ["add_arguments", "histogram_density", "run"]


def histogram_density(x: np.ndarray, limit: float, bins: int) -> tuple[np.ndarray, float]:
    r"""Density histogram ``[i, j]`` (``i`` along ``x1``) of ``x`` on ``bins^2`` cells of
    ``[-limit, limit]^2``, normalised by all samples (mass outside the box included)."""
    edges = np.linspace(-limit, limit, bins + 1)
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=(edges, edges))
    return hist / (len(x) * (edges[1] - edges[0]) ** 2), limit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/normalisation.yaml")
    parser.add_argument("--models", nargs="+", required=True, help="B-NAF density model.pt")
    parser.add_argument("--grids", nargs="+", required=True, help="their grid.npz files")
    parser.add_argument("--out", required=True, help="output PNG")


def run(args: argparse.Namespace) -> int:
    from bnaf.normalisation import NormalisationParams

    p = load(args.params, NormalisationParams, section="normalisation")
    grids = read_grids(args.grids)
    panels, names = [], []
    for k, path in enumerate(args.models):
        if not Path(path).is_file():
            raise BnafError(f"model file not found: {path}")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        target = str(blob.get("target", Path(path).parent.parent.name))
        if (target, "bnaf") not in grids:
            raise BnafError(f"samples: no B-NAF grid for {target} among --grids")
        g = grids[(target, "bnaf")]
        model = load_flow(path).double()
        s = sample(model, p.samples.n, generator=torch.Generator().manual_seed(p.seed + k))
        print(f"{target}: {p.samples.n} samples, accepted fraction {s.accepted:.4f}")
        panels.append(
            [
                crop(g["centres"], np.exp(g["log_density"]), p.samples.figure_limit),
                histogram_density(s.x.numpy(), p.samples.figure_limit, p.samples.bins),
            ]
        )
        names.append(target)
    draw_panels(panels, names, ["B-NAF density", "B-NAF samples"], args.out)
    print(f"wrote {args.out}")
    return 0
