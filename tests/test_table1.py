"""Selection over seeds and Table 1 assembly from hand-made metrics files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bnaf.cli import main
from bnaf.core.errors import BnafError
from bnaf.uci.select import mean_std, select
from bnaf.uci.table import assemble, render

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"


def _metrics(dataset: str, config: str, seed: int, val: float, test: float, params: int) -> dict:
    layers, hidden = (int(x[1:]) for x in config.split("_"))
    return {
        "dataset": dataset,
        "config": config,
        "layers": layers,
        "hidden_factor": hidden,
        "seed": seed,
        "budget": "quick",
        "reduced": True,
        "model": {"dim": 6 if dataset == "power" else 8},
        "parameters": {"paper": params, "full": params + 100},
        "best_epoch": 5,
        "epochs_run": 9,
        "validation": {"log_likelihood": val},
        "test": {"log_likelihood": test},
        "wall_s": 60.0,
        "device": "cpu",
        "environment": {"processor": "x86_64"},
        "train_samples": 1000,
    }


# POWER: L2_H40 has the higher mean validation LL (0.5 vs 0.4) although one seed of L1_H10
# is the best single run; its size 181,264 gives the published ratio 414,213 / 181,264 = 2.29.
POWER = [
    _metrics("power", "L1_H10", 0, 0.70, 0.60, 2764),
    _metrics("power", "L1_H10", 1, 0.30, 0.30, 2764),
    _metrics("power", "L1_H10", 2, 0.20, 0.20, 2764),
    _metrics("power", "L2_H40", 2, 0.52, 0.63, 181264),
    _metrics("power", "L2_H40", 0, 0.50, 0.60, 181264),
    _metrics("power", "L2_H40", 1, 0.48, 0.60, 181264),
]


def test_mean_std_conventions() -> None:
    assert mean_std([1.0, 2.0, 3.0], 0) == pytest.approx((2.0, math.sqrt(2 / 3)))
    assert mean_std([1.0, 2.0, 3.0], 1) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0], 1) == (4.0, None)


def test_select_by_mean_validation_then_test_mean_std() -> None:
    s = select(POWER, "power", std_ddof=0)
    assert s["selected"] == "L2_H40" and s["n_seeds"] == 3
    assert s["configs"]["L2_H40"]["seeds"] == [0, 1, 2]
    assert s["configs"]["L2_H40"]["test_ll"] == [0.60, 0.60, 0.63]  # ordered by seed
    assert s["test_mean"] == pytest.approx(0.61)
    assert s["test_std"] == pytest.approx(math.sqrt((0.01**2 * 2 + 0.02**2) / 3))
    assert s["validation_mean"] == pytest.approx(0.5)
    assert s["ratios"]["naf5"]["ours"] == pytest.approx(414_213 / 181_264)
    assert s["ratios"]["naf10"]["ours"] == pytest.approx(828_258 / 181_264)
    assert s["ratios"]["naf5"]["paper"] == 2.29
    assert s["published_config_by_ratio"] == "L2_H40"
    assert s["wall_s"] == 6 * 60.0


def test_no_ratio_for_data_of_another_width() -> None:
    narrow = [dict(m, model={"dim": 5}) for m in POWER]
    s = select(narrow, "power", 0)
    assert s["ratios"] is None and s["published_config_by_ratio"] is None
    table = assemble([s], [], ["power"], "quick", True, 0)
    md, _ = render(table)
    ours = next(line for line in md.splitlines() if line.startswith("| NAF(5) / B-NAF, ours"))
    assert "n/a" in ours and "2.29×" in md  # the published ratio is still shown


def test_select_rejects_mixed_inputs() -> None:
    with pytest.raises(BnafError, match="given for 'gas'"):
        select(POWER, "gas", 0)
    with pytest.raises(BnafError, match="seed listed twice"):
        select(POWER + POWER[:1], "power", 0)
    other = dict(POWER[0], budget="paper")
    with pytest.raises(BnafError, match="several budgets"):
        select(POWER[1:] + [other], "power", 0)


def _table() -> dict:
    sel = select(POWER, "power", 0)
    status = [
        {"dataset": "gas", "available": False, "reason": "archive not found",
         "how_to_supply": "put data.tar.gz in the mirror"},
        {"dataset": "power", "available": True, "reason": ""},
    ]  # fmt: skip
    datasets = ["power", "gas", "hepmass", "miniboone"]
    return assemble([sel], status, datasets, "quick", True, 0)


def test_table_assembly_formatting_and_not_run() -> None:
    table = _table()
    (power,) = table["results"]
    assert power["test_ll"]["paper"] == {"mean": 0.61, "std": 0.01}
    assert power["delta_in_published_std"] == pytest.approx(0.0, abs=1e-9)
    reasons = {n["dataset"]: n for n in table["not_run"]}
    assert reasons["gas"]["reason"] == "archive not found"
    assert reasons["gas"]["how_to_supply"] == "put data.tar.gz in the mirror"
    assert "not requested" in reasons["hepmass"]["reason"]
    assert "not in this budget" in reasons["bsds300"]["reason"]
    md, csv_text = render(table)
    lines = md.splitlines()
    ours = next(line for line in lines if line.startswith("| B-NAF (ours, quick, REDUCED)"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[1] == "0.61 ± 0.01" and cells[2:] == ["not run"] * 4
    published = next(line for line in lines if line.startswith("| B-NAF (published)"))
    assert "-8.95 ± 0.07" in published and "157.36 ± 0.03" in published
    assert "| TAN " in md and "| FFJORD " in md and "| Real NVP " in md
    assert "2.29×" in md and "4.57×" in md and "L2_H40" in md
    paper = next(line for line in lines if line.startswith("| Paper's config"))
    assert "L2_H40" in paper and "L2_H20" in paper and "L2_H5 (outside the stated grid)" in paper
    assert "ddof=0" in md and "REDUCED" in md and "archive not found" in md
    grid = md[md.index("## Grid search") :]
    assert "| L1_H10   | 0.40 " in grid and "| L2_H40   | **0.50** " in grid
    rows = csv_text.strip().splitlines()
    assert len(rows) == 1 + 9 + 8 and rows[10].startswith('"B-NAF (ours, quick')
    json.dumps(table, allow_nan=False)


def test_cli_select_and_table(tmp_path: Path) -> None:
    files = []
    for m in POWER:
        path = tmp_path / "results" / m["config"] / f"seed{m['seed']}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(m))
        files.append(str(path))
    sel = tmp_path / "selection.json"
    argv = ["uci", "select", "--params", str(QUICK), "--dataset", "power", "--metrics", *files]
    assert main([*argv, "--out", str(sel)]) == 0
    status = tmp_path / "gas.status.json"
    status.write_text(json.dumps({"dataset": "gas", "available": False, "reason": "offline"}))
    out = {k: tmp_path / f"table1.{k}" for k in ("md", "json", "csv")}
    args = ["uci", "table", "--params", str(QUICK), "--selections", str(sel), "--status",
            str(status)] + [a for k, p in out.items() for a in (f"--{k}", str(p))]  # fmt: skip
    assert main(args) == 0
    table = json.loads(out["json"].read_text())
    assert table["results"][0]["selected_config"] == "L2_H40"
    # the selected config's run folders, every seed (the report draws the first one's curves)
    seeds = sorted(m["seed"] for m in POWER if m["config"] == "L2_H40")
    assert table["results"][0]["runs"] == [f"results/uci/power/L2_H40/seed{k}" for k in seeds]
    assert table["not_run"][0] == {"dataset": "gas", "reason": "offline"}
    assert table["differences"] and table["budget"] == "quick"
    assert main(["uci", "select", "--params", str(QUICK), "--dataset", "power", "--metrics",
                 str(tmp_path / "nope.json"), "--out", str(sel)]) == 2  # fmt: skip


PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "bnaf-uai2019.txt"


@pytest.mark.skipif(not PAPER.is_file(), reason="paper text not present")
def test_published_numbers_match_the_paper_text() -> None:
    import re

    from bnaf.uci.published import DATASETS, TABLE1

    lines = PAPER.read_text().replace("\u2212", "-").splitlines()
    for model in TABLE1:
        label = "Ours" if model == "B-NAF" else model
        line = next(x for x in lines if re.match(rf"{re.escape(label)} -?\d*\.\d+±", x))
        found = [(float(a), float(b)) for a, b in re.findall(r"(-?\d*\.\d+)±(\d*\.\d+)", line)]
        assert found == [TABLE1[model][d] for d in DATASETS], model
