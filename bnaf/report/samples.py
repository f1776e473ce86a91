r"""``python -m bnaf samples``: samples of the Figure 2 B-NAF models (beyond the paper): rows =
datasets, columns =
B-NAF density | B-NAF samples.

The density panel is ``exp(log p)`` from each run's ``grid.npz``; the samples panel is a
normalised histogram of ``n`` samples drawn by inverting base draws
(``bnaf.flows.inverse.sample``),
drawn the same way (x right, y up; see :mod:`bnaf.toy.plot`).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bnaf.core.config import load
from bnaf.core.errors import BnafError
from bnaf.flows import load_flow_meta
from bnaf.flows.sampling import sample
from bnaf.report.params import NormalisationParams
from bnaf.toy.plot import crop, draw_panels, read_grids

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
    p = load(args.params, NormalisationParams, section="normalisation")
    grids = read_grids(args.grids)
    panels, names = [], []
    for k, path in enumerate(args.models):
        model, meta = load_flow_meta(path)
        target = str(meta.get("target", ""))
        if (target, "bnaf") not in grids:
            raise BnafError(f"samples: no B-NAF grid for {path}'s target {target!r} among --grids")
        g = grids[(target, "bnaf")]
        model = model.double()
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
