"""Stage normalisation (bnaf/normalisation.py) and figure samples: the integral of a flow's
density against independent estimates, the onto-R^d options, the CLI and the rules."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from bnaf.cli import main
from bnaf.flows import BNAF, save_flow
from bnaf.report.normalisation import base_mass, grid_integral
from bnaf.report.report import load_part

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def test_base_mass_of_a_1d_flow_is_the_normal_mass_of_its_saturated_interval() -> None:
    # d = 1, no residual: the range is (f(-inf), f(+inf)) and its base mass is
    # Phi(f(+inf)) - Phi(f(-inf)); the limits come from the flow's own forward at |x| = 1e4.
    torch.manual_seed(2)
    model = BNAF(1, flows=1, layers=2, hidden_factor=6, residual="none").double()
    with torch.no_grad():
        lo, hi = model(torch.tensor([[-1e4], [1e4]], dtype=torch.float64))[0][:, 0].tolist()
    exact = stats.norm.cdf(hi) - stats.norm.cdf(lo)
    assert 0.05 < exact < 0.95  # a model whose range holds a fraction of the base mass
    mc = base_mass(model, 40_000, seed=1, batch_size=10_000)["in_range"]
    assert abs(mc["estimate"] - exact) < 4 * math.sqrt(exact * (1 - exact) / 40_000)
    assert mc["lower95"] < mc["estimate"]


def test_grid_integral_matches_monte_carlo_mass_in_the_box() -> None:
    # A random 2-D flow without residual: its range holds well under all the base mass.
    torch.manual_seed(0)
    model = BNAF(2, flows=1, layers=2, hidden_factor=5, residual="none").double()
    integral = grid_integral(model, 8.0, 0.02, 50_000)
    coarse = grid_integral(model, 8.0, 0.04, 50_000)
    n = 50_000
    mc = base_mass(model, n, seed=3, batch_size=25_000, box=8.0)
    box, rng = mc["in_box"]["estimate"], mc["in_range"]["estimate"]
    assert 0.05 < box <= rng < 0.95
    tol = 4 * math.sqrt(box * (1 - box) / n) + abs(integral - coarse)
    assert abs(integral - box) < tol, (integral, box, tol)


@pytest.mark.parametrize(
    "options", [{"final_residual": True}, {"activation": "leakyrelu"}], ids=["res", "leaky"]
)
def test_onto_options_integrate_to_one(options: dict) -> None:
    torch.manual_seed(1)
    model = BNAF(2, flows=1, layers=1, hidden_factor=4, residual="gated", **options).double()
    n = 20_000
    mc = base_mass(model, n, seed=4, batch_size=20_000, box=10.0)
    assert mc["in_range"]["estimate"] == 1.0
    outside = 1.0 - mc["in_box"]["estimate"]
    total = grid_integral(model, 10.0, 0.02, 50_000) + outside
    assert abs(total - 1.0) < 4 * math.sqrt(max(outside, 1 / n) * (1 - outside) / n) + 1e-3


def _tiny_params(path: Path) -> Path:
    data = yaml.safe_load((ROOT / "params" / "quick" / "normalisation.yaml").read_text())
    p = data["normalisation"]
    p.update(budget="tiny", batch_size=5000)
    p["toy"].update(grid_limit=6.0, grid_step=0.1, mc_samples=4000)
    p["uci"].update(mc_samples=2000)
    p["samples"].update(n=2000, bins=20)
    p["onto"].update(steps=5, hidden_factor=2, layers=1, variants=["paper", "leakyrelu"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fake_results(root: Path) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)
    toy = root / "results/toy/density/8gaussians/bnaf/model.pt"
    model = BNAF(2, flows=1, layers=2, hidden_factor=4)
    save_flow(model, toy, objective="density", target="8gaussians")
    c = -4 + 0.1 * (np.arange(80) + 0.5)
    pts = torch.from_numpy(np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2))
    with torch.no_grad():
        log_p = model.double().log_prob(pts).numpy().reshape(80, 80)
    grid = toy.parent / "grid.npz"
    np.savez(grid, centres=c, log_density=log_p, target="8gaussians", model="bnaf")
    uci = root / "results/uci/power/L1_H3/seed0/model.pt"
    model = BNAF(6, flows=2, layers=1, hidden_factor=3)
    with torch.no_grad():  # widen the last flow's bounded range to hold some base mass
        model.transforms[-1].linears[-1].log_scale += 2.0
    save_flow(model, uci, dataset="power", seed=0)
    return toy, grid, uci


@pytest.mark.float32  # a float32 model, as trained
def test_cli_writes_report_twin_and_names_what_did_not_run(tmp_path: Path) -> None:
    params = _tiny_params(tmp_path / "n.yaml")
    toy, grid, uci = _fake_results(tmp_path)
    status = tmp_path / "gas.status.json"
    status.write_text(
        json.dumps(
            {"dataset": "gas", "available": False, "reason": "offline", "how_to_supply": "X"}
        )
    )
    md, out = tmp_path / "reports/normalisation.md", tmp_path / "reports/normalisation.json"
    argv = ["normalisation", "--params", str(params), "--toy-models", str(toy)]
    argv += ["--toy-targets", "8gaussians", "checkerboard", "--uci-models", str(uci)]
    argv += ["--uci-datasets", "power", "gas", "--status", str(status)]
    assert main([*argv, "--md", str(md), "--json", str(out)]) == 0
    twin = load_part(out)
    assert [t["dataset"] for t in twin["toy"]] == ["8gaussians"]
    assert [(u["dataset"], u["config"], u["seed"]) for u in twin["uci"]] == [("power", "L1_H3", 0)]
    assert {n["dataset"]: n["reason"] for n in twin["not_run"]} == {
        "checkerboard": "no trained model file was given (the training stage did not run)",
        "gas": "dataset unavailable: offline",
    }
    assert [o["variant"] for o in twin["onto"]] == ["paper", "leakyrelu"]
    assert twin["onto"][1]["mc"]["in_range"]["estimate"] == 1.0
    z = twin["uci"][0]["mass"]
    assert 0 < z["lower95"] <= z["estimate"] < 1
    assert twin["uci"][0]["ll_offset"] == pytest.approx(-math.log(z["estimate"]))
    assert "| power" in md.read_text() and twin["differences"]
    # A missing model file: one clear error line, exit status 2.
    bad = ["normalisation", "--params", str(params), "--toy-models", str(tmp_path / "no.pt")]
    assert main([*bad, "--md", str(md), "--json", str(out)]) == 2

    png = tmp_path / "reports/samples.png"
    argv = ["samples", "--params", str(params), "--models", str(toy)]
    assert main([*argv, "--grids", str(grid), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_snakemake_runs_normalisation_and_samples_on_tiny_toy_models(tmp_path: Path) -> None:
    from toy_tiny import tiny_toy_params

    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    for folder in ("schemas", "report"):
        shutil.copytree(ROOT / "workflow" / folder, tmp_path / "workflow" / folder)
    tiny = tmp_path / "params" / "tiny"
    tiny.mkdir(parents=True)
    # The parts this rule file reads from: data (download checkpoint), toy and uci.
    for part in ("common", "data", "toy", "uci", "normalisation"):
        rules = tmp_path / "workflow" / "rules" / f"{part}.smk"
        rules.parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / "workflow" / "rules" / f"{part}.smk", rules)
        if part != "common":
            shutil.copy(ROOT / "params" / "quick" / f"{part}.yaml", tiny / f"{part}.yaml")
    shutil.copy(ROOT / "params" / "quick" / "report.yaml", tiny / "report.yaml")  # schema
    tiny_toy_params(tiny / "toy.yaml", iterations=20, density={"targets": ["checkerboard"]})
    _tiny_params(tiny / "normalisation.yaml")
    uci = yaml.safe_load((tiny / "uci.yaml").read_text())
    uci["uci"]["datasets"] = []  # no UCI downloads or training in this test
    (tiny / "uci.yaml").write_text(yaml.safe_dump(uci, sort_keys=False))
    targets = ["reports/normalisation.md", "reports/samples.png"]
    cmd = ["snakemake", "--cores", "2", *targets, "--config", "params=params/tiny"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    twin = load_part(tmp_path / "reports" / "normalisation.json")
    assert [t["dataset"] for t in twin["toy"]] == ["checkerboard"]
    assert twin["uci"] == [] and twin["not_run"] == []
    assert (tmp_path / "reports" / "samples.png").stat().st_size > 0
    assert (tmp_path / "logs" / "normalisation" / "normalisation.log").exists()
