"""`snakemake reports/figure2.png reports/figure3.png reports/toy.md` end to end, offline, on a
tiny params folder in a temporary copy of the workflow (never the checkout's results)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from toy_tiny import ROOT, tiny_toy_params


@pytest.mark.slow
def test_snakemake_builds_the_toy_figures_and_table(tmp_path):
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    for folder in ("schemas", "report"):
        shutil.copytree(ROOT / "workflow" / folder, tmp_path / "workflow" / folder)
    for rules in ("common.smk", "toy.smk"):
        shutil.copy(ROOT / "workflow" / "rules" / rules, tmp_path / "workflow" / "rules" / rules)
    tiny_toy_params(
        tmp_path / "params" / "tiny" / "toy.yaml",
        iterations=20,
        density={"targets": ["checkerboard"]},
        energy={"targets": ["U2", "U3"]},  # the planar runs: one pack of two
    )
    targets = ["reports/figure2.png", "reports/figure3.png", "reports/toy.md"]
    cmd = ["snakemake", "--cores", "2", *targets, "--config", "params=params/tiny"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for t in targets:
        assert (tmp_path / t).stat().st_size > 0
    twin = json.loads((tmp_path / "reports" / "toy.json").read_text())
    assert {(r["dataset"], r["model"]) for r in twin["density"]} == {
        ("checkerboard", "glow"),
        ("checkerboard", "bnaf"),
    }
    assert {(r["energy"], r["model"]) for r in twin["energy"]} == {
        ("U2", "planar"),
        ("U2", "bnaf"),
        ("U3", "planar"),
        ("U3", "bnaf"),
    }
    # one log per job: a single run's, or a pack's (both planar runs in one process)
    for run, log in [("density/checkerboard/bnaf",) * 2, ("energy/U3/planar", "energy/planar")]:
        assert (tmp_path / "results" / "toy" / run / "model.pt").is_file()
        log = (tmp_path / "logs" / "toy_train" / f"{log}.log").read_text()
        assert "iter" in log and "lr" in log  # progress lines kept in the per-rule log
    pack = json.loads((tmp_path / "results/toy/energy/U3/planar/metrics.json").read_text())
    assert pack["pack"] == ["U2", "U3"]
