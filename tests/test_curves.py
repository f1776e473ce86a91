"""The report's learning-curves figure on small fake histories: one panel per run the parts
report (Table 1's selected config per dataset, Table 2's rows, every toy run), a marker at
every epoch where the learning rate dropped, and a note (never a crash) for what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnaf.core.errors import BnafError
from bnaf.core.history import read_history, write_history
from bnaf.report import curves
from bnaf.report.params import load_report
from bnaf.report.report import build

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_report(ROOT / "params" / "quick" / "report.yaml").parts


def _uci_history(epochs: int, drops: list[int]) -> list[dict]:
    r"""Rows as the UCI trainer writes them, the lr halved from each epoch of ``drops`` on."""
    lr, rows = 0.01, []
    for e in range(1, epochs + 1):
        lr = lr / 2 if e in drops else lr
        rows.append({"epoch": e, "train_nll": 2.0 / e, "validation_ll": -2.5 / e, "lr": lr,
                     "best": True, "decay": e + 1 in drops})  # fmt: skip
    return rows


def _workdir(tmp_path: Path, drops: dict[str, list[int]]) -> tuple[Path, dict[str, dict]]:
    r"""Part twins naming their runs, and a history.csv in every run folder they name."""
    uci = {d: f"results/uci/{d}/L1_H4/seed0" for d in drops}
    parts = {
        "table1": {
            "results": [
                {
                    "dataset": d,
                    "selected_config": "L1_H4",
                    "runs": [run, run[:-1] + "1"],
                    "test_ll": {
                        "ours": {"mean": 0.5, "std": 0.1},
                        "paper": {"mean": 0.6, "std": 0.1},
                    },
                }
                for d, run in uci.items()
            ]
        },
        "table2": {
            "ours": {},
            "runs": {c: {"mnist": [f"results/vae/mnist/{c}/seed0"]} for c in ("vae", "bnaf-K2")},
        },
        "toy": {
            "density": [
                {
                    "dataset": "8gaussians",
                    "model": "bnaf",
                    "run": "results/toy/density/8gaussians/bnaf",
                }
            ],
            "energy": [{"energy": "U1", "model": "planar", "run": "results/toy/energy/U1/planar"}],
        },  # fmt: skip
    }
    for d, run in uci.items():
        write_history(tmp_path / run / "history.csv", _uci_history(12, drops[d]))
    for c in ("vae", "bnaf-K2"):
        rows = [{"epoch": e, "beta": min(e / 2, 1), "train": 100 - e, "valid": 99 - e}
                for e in (1, 2, 3)]  # fmt: skip
        write_history(tmp_path / f"results/vae/mnist/{c}/seed0/history.csv", rows)
    for run in ("results/toy/density/8gaussians/bnaf", "results/toy/energy/U1/planar"):
        rows = [{"iteration": i, "loss": 3 - i / 1e3, "lr": 0.1 if i < 2000 else 0.05}
                for i in (1000, 2000, 3000)]  # fmt: skip
        write_history(tmp_path / run / "history.csv", rows)
    return tmp_path, parts


def _markers(ax) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.lines if line.get_gid() == "lr-change"]


@pytest.mark.parametrize("seed", range(4))
def test_one_panel_per_reported_run_and_a_marker_at_every_lr_drop(
    tmp_path: Path, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    datasets = ["power", "gas", "hepmass", "miniboone", "bsds300"][: rng.integers(1, 6)]
    drops = {d: sorted(rng.choice(np.arange(2, 13), rng.integers(0, 4), replace=False).tolist())
             for d in datasets}  # fmt: skip
    work, parts = _workdir(tmp_path, drops)
    panels, notes = curves.selected_runs(SPECS, parts)
    assert notes == []
    expected = (
        ["results/toy/density/8gaussians/bnaf", "results/toy/energy/U1/planar"]
        + [f"results/uci/{d}/L1_H4/seed0" for d in datasets]  # the first seed only
        + [f"results/vae/mnist/{c}/seed0" for c in ("vae", "bnaf-K2")]
    )
    assert [p.folder for p in panels] == expected  # the report's order of parts
    histories = [(p, read_history(work / p.folder / "history.csv")) for p in panels]
    fig = curves.draw(histories, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == len(panels)
    for ax, panel in zip(drawn, panels):
        assert ax.get_title() == panel.title
        if "/uci/" in panel.folder:
            dataset = panel.folder.split("/")[2]
            assert _markers(ax) == drops[dataset]
            # train and validation, both as NLL: the validation curve is -validation_ll
            train, valid = ax.lines[0].get_ydata(), ax.lines[1].get_ydata()
            assert list(train) == [2.0 / e for e in range(1, 13)]
            assert list(valid) == [2.5 / e for e in range(1, 13)]
        elif "/toy/" in panel.folder:
            assert _markers(ax) == [2000.0]
        else:
            assert _markers(ax) == []  # the VAE's learning rate is constant


def test_missing_parts_and_histories_are_notes_not_crashes(tmp_path: Path) -> None:
    work, parts = _workdir(tmp_path, {"power": [3]})
    (work / "results/toy/energy/U1/planar/history.csv").unlink()
    del parts["table2"]
    parts["table1"]["results"][0].pop("runs")  # a twin written before it named its runs
    out = work / "reports" / "curves.png"
    drawn = curves.write(SPECS, parts, work, out)
    assert out.is_file() and drawn["runs"] == ["results/toy/density/8gaussians/bnaf"]
    notes = " | ".join(drawn["not_drawn"])
    assert "results/toy/energy/U1/planar: no history.csv" in notes
    assert "Table 2" in notes and "not run" in notes
    assert "does not name its runs" in notes
    # A part that ran but reports no run (every dataset unavailable) says so too.
    parts["table1"]["results"] = []
    assert "no run reported" in " ".join(curves.write(SPECS, parts, work, out)["not_drawn"])
    # Nothing at all to draw: the figure says so.
    empty = curves.write(SPECS, {}, work, out)
    assert empty["runs"] == [] and out.is_file() and len(empty["not_drawn"]) == 3


def test_a_history_without_the_parts_columns_is_an_error_naming_it(tmp_path: Path) -> None:
    work, parts = _workdir(tmp_path, {"power": []})
    bad = work / "results/uci/power/L1_H4/seed0/history.csv"
    bad.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(BnafError, match="no column train_nll, validation_ll") as err:
        curves.write(SPECS, parts, work, work / "curves.png")
    assert str(bad) in str(err.value)


def test_the_report_shows_the_figure_with_its_notes(tmp_path: Path) -> None:
    work, parts = _workdir(tmp_path, {"power": [4]})
    (work / "reports").mkdir()
    (work / "workflow" / "rules").mkdir(parents=True)
    for spec in SPECS:
        if spec.name in parts:
            data = parts[spec.name] | {"not_run": [], "differences": []}
            (work / spec.json).write_text(json.dumps(data))
    params = load_report(ROOT / "params" / "quick" / "report.yaml")
    md, twin = build(params, work, work / "reports", work / "reports" / "curves.png")
    assert "## Learning curves\n\n![curves](curves.png)" in md
    assert (work / "reports" / "curves.png").is_file()
    assert len(twin["curves"]["runs"]) == 5 and twin["curves"]["not_drawn"] == []
    md_plain, twin_plain = build(params, work, work / "reports")
    assert "Learning curves" not in md_plain and "curves" not in twin_plain
