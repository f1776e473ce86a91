"""``dvc plots show`` draws every run's learning curves from its ``history.csv`` (the top-level
``plots:`` of dvc.yaml), and reads nothing else of ``results/`` (``.dvcignore``).

Run by the real DVC on a temporary repository holding the checkout's dvc.yaml and .dvcignore
and one finished run folder per family, laid out by the families' own run patterns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bnaf.core.history import write_history
from bnaf.toy.runs import ToyRun
from bnaf.uci.runs import UciRun
from bnaf.vae.runs import VaeRun

ROOT = Path(__file__).resolve().parents[1]

HISTORIES = {
    UciRun("power", "L1_H4", 0).path: [
        {"epoch": e, "train_nll": 1.0 / e, "validation_ll": -1.5 / e, "lr": 0.01, "best": True}
        for e in (1, 2, 3)
    ],
    VaeRun("mnist", "vae", 1).path: [
        {"epoch": e, "beta": e / 2, "train": 200.0 - e, "valid": 190.0 - e} for e in (1, 2)
    ],
    ToyRun("density", "8gaussians", "bnaf").path: [
        {"iteration": i, "loss": 3.0 - i / 1000, "lr": 0.1} for i in (1000, 2000)
    ],
}
#: each family's x column and curves (dvc.yaml)
AXES = {
    "results/uci": ("epoch", {"train_nll", "validation_ll"}),
    "results/vae": ("epoch", {"train", "valid"}),
    "results/toy": ("iteration", {"loss"}),
}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    for run, rows in HISTORIES.items():
        write_history(work / run / "history.csv", rows)
        # what else a finished run folder holds: never a plot
        (work / run / "metrics.json").write_text(json.dumps({"history": rows}))
        (work / run / "model.pt").write_bytes(b"\x80\x02not a plot")
    (work / "results" / "uci" / "power" / "selection.json").write_text("{}")
    env = {k: v for k, v in os.environ.items()} | {"DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True, timeout=120)
    return work, env


def test_dvc_plots_show_draws_one_plot_per_run_from_its_history(
    repo: tuple[Path, dict[str, str]],
) -> None:
    work, env = repo
    done = subprocess.run(["dvc", "plots", "show", "--json"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout)
    assert not shown.get("errors"), shown.get("errors")
    assert set(shown["data"]) == {f"{run}/history.csv" for run in HISTORIES}
    for run, rows in HISTORIES.items():
        x, curves = next(v for k, v in AXES.items() if run.startswith(k + "/"))
        (plot,) = shown["data"][f"{run}/history.csv"]
        content = plot["content"]
        assert content["encoding"]["x"]["field"] == x
        values = content["data"]["values"]
        # every row of the file, once per curve, with the file's numbers
        assert len(values) == len(rows) * len(curves)
        drawn = {v.get("field", next(iter(curves))) for v in values}
        assert drawn == curves
        for v in values:
            column = v.get("field", next(iter(curves)))
            row = next(r for r in rows if str(r[x]) == v[x])
            y = v["dvc_inferred_y_value"] if "field" in v else v[column]  # several curves or one
            assert float(y) == row[column]
