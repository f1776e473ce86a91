"""The selection file (``results/uci/<dataset>/selection.json``) as a document: every key it
holds, checked against values computed here from the runs, and every refusal with its reason.

Table 1 reads only a few of its keys, but the file is what a researcher opens to see why a
config was chosen: the per-config validation figures over seeds, their epochs, sizes, the NAF
ratios beside the published ones and the run's hardware must all be the runs' own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bnaf.core.errors import BnafError
from bnaf.flows.count import naf_counts
from bnaf.uci.published import NAF_PUBLISHED, PUBLISHED_RATIOS
from bnaf.uci.select import mean_std, read_metrics, run, select

ROOT = Path(__file__).resolve().parents[1]


def _run(config: str, seed: int, val: float, test: float, params: int, dataset: str = "power"):
    layers, hidden = (int(x[1:]) for x in config.split("_"))
    return {
        "dataset": dataset, "config": config, "layers": layers, "hidden_factor": hidden,
        "seed": seed, "budget": "quick", "reduced": True, "model": {"dim": 6},
        "parameters": {"paper": params, "full": params + 7}, "best_epoch": 3 + seed,
        "epochs_run": 9 + seed + layers, "validation": {"log_likelihood": val},
        "test": {"log_likelihood": test}, "wall_s": 1.5 * (seed + 1), "device": "cpu",
        "environment": {"processor": "x86_64"}, "hardware": f"cpu{seed % 2}",
        "train_samples": 50,
    }  # fmt: skip


# given out of seed order: the per-seed lists must come back sorted by seed
RUNS = [
    _run("L1_H10", 2, 0.39, 0.69, 1000),
    _run("L1_H10", 0, 0.40, 0.70, 1000),
    _run("L1_H10", 1, 0.41, 0.71, 1000),
    _run("L2_H20", 1, 0.45, 0.20, 3000),
    _run("L2_H20", 0, 0.55, 0.10, 3000),
    _run("L2_H20", 2, 0.50, 0.30, 3000),
]


def test_every_key_of_the_selection_is_the_runs_own() -> None:
    doc = select([dict(r) for r in RUNS], "power", std_ddof=1)
    assert (doc["dataset"], doc["dim"], doc["budget"], doc["reduced"]) == (
        "power",
        6,
        "quick",
        True,
    )
    assert doc["criterion"] == "highest mean validation log-likelihood over seeds (Section 5.3)"
    assert (doc["std_ddof"], doc["selected"], doc["n_seeds"]) == (1, "L2_H20", 3)
    assert doc["devices"] == ["cpu"] and doc["hardware"] == ["cpu0", "cpu1"]
    assert doc["train_samples"] == 50 and doc["wall_s"] == pytest.approx(2 * (1.5 + 3.0 + 4.5))
    by_config: dict[str, list[dict]] = {}
    for r in RUNS:
        by_config.setdefault(r["config"], []).append(r)
    assert set(doc["configs"]) == set(by_config)
    for name, runs in by_config.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        val = [r["validation"]["log_likelihood"] for r in runs]
        test = [r["test"]["log_likelihood"] for r in runs]
        c = doc["configs"][name]
        assert (c["layers"], c["hidden_factor"]) == (runs[0]["layers"], runs[0]["hidden_factor"])
        assert c["seeds"] == [0, 1, 2] and c["validation_ll"] == val and c["test_ll"] == test
        assert c["validation_mean"] == pytest.approx(np.mean(val))
        assert c["validation_std"] == pytest.approx(np.std(val, ddof=1))
        assert c["test_mean"] == pytest.approx(np.mean(test))
        assert c["test_std"] == pytest.approx(np.std(test, ddof=1))
        assert c["parameters"] == runs[0]["parameters"]
        assert c["best_epochs"] == [3, 4, 5] and c["epochs_run"] == [r["epochs_run"] for r in runs]
        assert c["wall_s"] == pytest.approx(1.5 + 3.0 + 4.5)
    chosen = doc["configs"]["L2_H20"]
    assert doc["test_mean"] == chosen["test_mean"] and doc["test_std"] == chosen["test_std"]
    assert doc["validation_mean"] == chosen["validation_mean"]
    assert doc["parameters"] == {"paper": 3000, "full": 3007}
    naf = naf_counts("power")
    assert doc["ratios"] == {
        "naf5": {"ours": naf["5"] / 3000, "paper": PUBLISHED_RATIOS["power"][0]},
        "naf10": {"ours": naf["10"] / 3000, "paper": PUBLISHED_RATIOS["power"][1]},
        "naf_params": naf,
        "naf_params_published": {"5": NAF_PUBLISHED["power"][0], "10": NAF_PUBLISHED["power"][1]},
    }
    assert doc["published_config_by_ratio"] is None  # neither size gives the published ratio


def test_the_published_config_is_inferred_from_the_ratio() -> None:
    """The grid point whose size gives the published NAF ratio (to 2 decimals) is named."""
    size = round(NAF_PUBLISHED["power"][0] / PUBLISHED_RATIOS["power"][0])
    runs = [_run("L1_H10", s, 0.4, 0.7, 1000) for s in range(2)]
    runs += [_run("L2_H40", s, 0.1, 0.7, size) for s in range(2)]
    doc = select(runs, "power", std_ddof=0)
    assert doc["selected"] == "L1_H10" and doc["published_config_by_ratio"] == "L2_H40"


def test_another_width_gets_no_ratio() -> None:
    runs = [dict(r, model={"dim": 3}) for r in RUNS]
    doc = select(runs, "power", std_ddof=0)
    assert doc["ratios"] is None and doc["published_config_by_ratio"] is None


def test_mean_std_by_ddof() -> None:
    assert mean_std([1.0, 2.0, 4.0], 0) == pytest.approx((7 / 3, np.std([1, 2, 4])))
    assert mean_std([1.0, 2.0, 4.0], 1) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([1.0], 1) == (1.0, None) and mean_std([1.0], 0) == (1.0, 0.0)
    with pytest.raises(BnafError, match="^no values to average$"):
        mean_std([], 0)


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([], "^power: no metrics files to select from$"),
        ([_run("L1_H10", 0, 0.1, 0.1, 10, dataset="gas")],
         "^a metrics file of 'gas' was given for 'power'$"),
        ([_run("L1_H10", 0, 0.1, 0.1, 10), dict(_run("L1_H10", 1, 0.1, 0.1, 10), budget="paper")],
         r"^power: metrics from several budgets \['paper', 'quick'\] mixed$"),
        ([_run("L1_H10", 0, 0.1, 0.1, 10), _run("L1_H10", 0, 0.2, 0.1, 10)],
         r"^power L1_H10: seed listed twice in \[0, 0\]$"),
    ],
)  # fmt: skip
def test_selection_refuses_with_its_reason(runs: list[dict], message: str) -> None:
    with pytest.raises(BnafError, match=message):
        select(runs, "power", std_ddof=0)


def _write(folder: Path, m: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(m))
    return path


def test_read_metrics_names_the_bad_value_and_the_wrong_slot(tmp_path: Path) -> None:
    bad = dict(RUNS[0], test={"log_likelihood": None})
    path = _write(tmp_path / "L1_H10" / "seed2", bad)
    with pytest.raises(
        BnafError, match=r"'test\.log_likelihood' is null, expected a finite number$"
    ):
        read_metrics(path)
    moved = _write(tmp_path / "L1_H10" / "seed0", RUNS[0])  # seed 2's file in seed 0's slot
    with pytest.raises(BnafError, match="holds the run L1_H10/seed2, not its folder's$"):
        read_metrics(moved)
    assert read_metrics(_write(tmp_path / "L1_H10" / "seed2", RUNS[0]))["seed"] == 2


def test_the_stage_writes_the_document_and_one_line(tmp_path: Path, capsys) -> None:
    files = [str(_write(tmp_path / r["config"] / f"seed{r['seed']}", r)) for r in RUNS]
    out = tmp_path / "selection.json"
    args = argparse.Namespace(params=str(ROOT / "params" / "quick" / "uci.yaml"),
                              dataset="power", metrics=files, out=str(out))  # fmt: skip
    assert run(args) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics_files"] == files and doc["selected"] == "L2_H20"
    assert capsys.readouterr().out == (
        f"power: selected L2_H20 (validation {doc['validation_mean']:.4f}); test "
        f"{doc['test_mean']:.4f} ± {doc['test_std']:.4f} over 3 seeds\n"
    )
    args.metrics = files + [str(tmp_path / "missing" / "metrics.json")]
    with pytest.raises(BnafError, match="^metrics file\\(s\\) not found: .*missing/metrics.json$"):
        run(args)


def test_read_metrics_checks_relative_paths_and_odd_values(tmp_path: Path, monkeypatch) -> None:
    """Run from a config's or the dataset's folder (relative paths of two and three parts),
    the seed slot is still checked; a split that is not a mapping is one error, not a crash."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "L1_H10" / "seed0", RUNS[0])  # seed 2's file in seed 0's slot
    with pytest.raises(BnafError, match="holds the run L1_H10/seed2, not its folder's$"):
        read_metrics("L1_H10/seed0/metrics.json")
    _write(tmp_path / "L1_H10" / "seed2", RUNS[0])
    assert read_metrics("L1_H10/seed2/metrics.json")["seed"] == 2
    monkeypatch.chdir(tmp_path / "L1_H10")
    assert read_metrics("seed2/metrics.json")["seed"] == 2  # too short to name its config
    odd = _write(tmp_path / "odd", dict(RUNS[0], validation=5.0))
    with pytest.raises(BnafError, match=r"'validation' is 5\.0, expected an object$"):
        read_metrics(odd)


def test_one_seed_prints_no_spread_and_every_missing_file_is_named(tmp_path: Path, capsys):
    one = _run("L1_H10", 0, 0.4, 0.7, 1000)
    files = [str(_write(tmp_path / "L1_H10" / "seed0", one))]
    out = tmp_path / "selection.json"
    args = argparse.Namespace(params=str(ROOT / "params" / "quick" / "uci.yaml"),
                              dataset="power", metrics=files, out=str(out))  # fmt: skip
    run(args)
    assert json.loads(out.read_text())["test_std"] == 0.0  # ddof 0 in the quick params
    assert capsys.readouterr().out.endswith("test 0.7000 ± 0.0000 over 1 seeds\n")
    doc = select([one], "power", std_ddof=1)
    assert doc["test_std"] is None  # one seed has no ddof-1 spread
    args.metrics = files + ["a/metrics.json", "b/metrics.json"]
    with pytest.raises(BnafError, match="^metrics file\\(s\\) not found: a/metrics.json, b/metr"):
        run(args)
