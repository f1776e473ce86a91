"""The `toy` stage end to end on tiny budgets: training lowers the loss for every model,
results reload, and the toy table and Figures 2-3 build from the runs with the right layout."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from toy_tiny import tiny_toy_params

from bnaf.cli import main
from bnaf.core.config import load
from bnaf.core.history import read_history
from bnaf.flows import load_flow
from bnaf.toy import figure
from bnaf.toy.params import ToyParams
from bnaf.toy.plot import draw_panels

RUNS = [("density", "8gaussians", m) for m in ("glow", "bnaf")] + [
    ("energy", "U1", m) for m in ("planar", "bnaf")
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs of every model, through the CLI, as Snakemake calls them."""
    root = tmp_path_factory.mktemp("toy")
    params = tiny_toy_params(
        root / "toy.yaml",
        iterations=60,
        density={"targets": ["8gaussians"]},
        energy={"targets": ["U1"]},
    )
    out = {}
    for kind, target, model in RUNS:
        folder = root / "results" / kind / target / model
        argv = ["toy", "train", "--params", str(params), "--kind", kind, "--target", target]
        assert main([*argv, "--model", model, "--out", str(folder)]) == 0
        out[(kind, model)] = folder
    return params, out


@pytest.mark.parametrize("kind,model", [(k, m) for k, _, m in RUNS])
def test_training_lowers_the_loss_and_metrics_describe_the_run(runs, kind, model):
    _, folders = runs
    m = json.loads((folders[(kind, model)] / "metrics.json").read_text())
    losses = [row["loss"] for row in m["history"]]
    assert losses[-1] < losses[0] - 0.1, losses
    assert m["seed"] == 0 and m["budget"] == "tiny" and m["wall_time_s"] > 0
    assert m["environment"]["torch"] == torch.__version__
    assert m["config"]["optimiser"]["iterations"] == 60
    assert (folders[(kind, model)] / "model.pt").is_file()
    curves = read_history(folders[(kind, model)] / "history.csv")
    assert curves["loss"] == losses and list(curves) == ["iteration", "loss", "lr"]


def test_bnaf_models_reload_with_load_flow(runs):
    _, folders = runs
    density = load_flow(folders[("density", "bnaf")] / "model.pt")
    with np.load(folders[("density", "bnaf")] / "grid.npz") as g:
        c, log_density = g["centres"], g["log_density"]
    x = torch.tensor([[c[3], c[40]]], dtype=torch.float64)
    assert density.double().log_prob(x).item() == pytest.approx(log_density[3, 40], abs=1e-6)
    blob = torch.load(folders[("energy", "bnaf")] / "model.pt", weights_only=False)
    assert blob["objective"] == "energy" and blob["direction"] == "y->x"


def test_table_builds_from_run_metrics(runs, tmp_path):
    params, folders = runs
    md, js = tmp_path / "toy.md", tmp_path / "toy.json"
    argv = ["toy", "table", "--params", str(params), "--md", str(md), "--json", str(js)]
    argv += ["--density"] + [
        str(folders[("density", m)] / "metrics.json") for m in ("glow", "bnaf")
    ]
    argv += ["--energy"] + [
        str(folders[("energy", m)] / "metrics.json") for m in ("planar", "bnaf")
    ]
    assert main(argv) == 0
    twin = json.loads(js.read_text())
    assert [r["model"] for r in twin["density"]] == ["glow", "bnaf"]
    best = twin["density"][0]["best_achievable"]["mean"]
    assert best == pytest.approx(-2.83, abs=0.01)
    for r in twin["energy"]:
        assert r["kl"]["mean"] > -3 * r["kl"]["se"]  # KL >= 0 up to Monte Carlo error
        assert 0 <= r["coverage"] <= 1
    assert twin["differences"] and isinstance(twin["not_run"], list)
    assert "8gaussians" in md.read_text() and "KL(q || p)" in md.read_text()
    # A metrics file of the wrong kind is refused with one clear line.
    argv_bad = argv[:8] + ["--density", str(folders[("energy", "bnaf")] / "metrics.json")]
    assert main(argv_bad) == 2


def test_figures_have_one_row_per_target_and_one_column_per_model(runs, tmp_path):
    params, folders = runs
    grids = [str(folders[("density", m)] / "grid.npz") for m in ("glow", "bnaf")]
    out = str(tmp_path / "f2.png")
    figure.run(argparse.Namespace(figure="figure2", params=str(params), grids=grids, out=out,
                                  data_samples=10_000))  # fmt: skip
    grids = [str(folders[("energy", m)] / "grid.npz") for m in ("planar", "bnaf")]
    out = str(tmp_path / "f3.png")
    figure.run(argparse.Namespace(figure="figure3", params=str(params), grids=grids, out=out))
    toy = load(params, ToyParams, section="toy")
    for name, rows in (("f2", len(toy.density.targets)), ("f3", len(toy.energy.targets))):
        h, w = imread(tmp_path / f"{name}.png").shape[:2]
        # 2.2 inches per panel at 100 dpi: 3 columns (data/target + 2 models).
        assert (h, w) == (220 * rows, 220 * 3)


def test_panels_are_drawn_right_way_up(tmp_path):
    # A density that lives only in the top-left corner (x1 < -2, x2 > 2).
    c = np.linspace(-3.95, 3.95, 80)
    density = ((c[:, None] < -2) & (c[None, :] > 2)).astype(float)  # [i, j] = (x1, x2)
    draw_panels([[(density, 4.0)]], [""], [""], tmp_path / "o.png")
    img = imread(tmp_path / "o.png")[..., :3]
    yellow = (img[..., 0] > 0.8) & (img[..., 1] > 0.8) & (img[..., 2] < 0.3)  # viridis maximum
    rows, cols = np.nonzero(yellow)
    assert len(rows) > 100
    h, w = yellow.shape
    assert rows.max() < h / 2 and cols.max() < w / 2  # top rows of the image = high x2
