"""The report's cost model (:mod:`bnaf.report.cost`): measured step times times the paper
budget's steps, counted per job, never projected to a shape nothing trained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.report.cost import cost_lines, costs
from bnaf.toy.params import load_toy
from bnaf.uci.params import load_uci

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "params" / "paper"


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _toy_run(work: Path, kind: str, target: str, model: str, config: dict, **extra) -> None:
    env = {"device": "cpu", "processor": "testcpu", "torch_threads": 1}
    body = {"kind": kind, "target": target, "model": model, "config": config, "environment": env}
    _write(work / f"results/toy/{kind}/{target}/{model}/metrics.json", {**body, **extra})


def test_toy_packs_count_once_and_other_shapes_are_not_projected(tmp_path: Path) -> None:
    paper = load_toy(PAPER / "toy.yaml")
    planar = to_dict(paper.energy.planar)
    planar["optimiser"]["iterations"] = 1000  # a shorter run of the paper's shape
    for t in paper.energy.targets:  # one pack of four: 2 s for 1000 pack steps
        _toy_run(tmp_path, "energy", t, "planar", planar, train_s=2.0, iterations=1000,
                 pack=list(paper.energy.targets))  # fmt: skip
    bnaf = to_dict(paper.density.bnaf)
    bnaf["optimiser"]["iterations"] = 500
    _toy_run(tmp_path, "density", "8gaussians", "bnaf", bnaf, train_s=1.0, iterations=500)
    _toy_run(tmp_path, "density", "2spirals", "bnaf", bnaf, train_s=3.0, iterations=500)
    glow = to_dict(paper.density.glow)
    glow["depth"] = 16  # the quick budget's Glow: not the paper's shape
    for t in paper.density.targets:
        _toy_run(tmp_path, "density", t, "glow", glow, train_s=9.0, iterations=10,
                 pack=list(paper.density.targets))  # fmt: skip
    rows = {c.shape: c for c in costs(tmp_path, ["toy"], PAPER)}
    pack = rows["energy planar, pack of 4"]
    assert (pack.jobs, pack.measured_by) == (1, 1)  # four members, one job, one measurement
    assert pack.job_hours == pytest.approx(500_000 * 2.0 / 1000 / 3600)
    density = rows["density bnaf"]  # mean of 2 ms and 6 ms a step, three jobs of 20k steps
    assert density.s_per_step == pytest.approx(4e-3) and density.jobs == 3
    assert density.job_hours == pytest.approx(3 * 20_000 * 4e-3 / 3600)
    assert rows["density glow, pack of 3"].job_hours is None
    assert rows["energy bnaf"].s_per_step is None  # nothing ran
    lines, twin = cost_lines(list(rows.values()))
    text = "\n".join(lines)
    assert "not trained here: density glow, pack of 3, energy bnaf" in text
    assert {r["shape"] for r in twin} == set(rows)


def test_uci_steps_are_an_upper_bound_from_the_full_split(tmp_path: Path) -> None:
    paper = load_uci(PAPER / "uci.yaml")
    n, batch = 29_556, paper.train.batch_size
    common = {"params": {"flow": to_dict(paper.flow), "train": {"batch_size": batch}},
              "train_subset": None, "train_samples": n}  # fmt: skip
    run = tmp_path / "results/uci/miniboone/L1_H10/seed0/metrics.json"
    _write(run, {**common, "throughput": {"steps_per_s": 50.0}, "hardware": "testcpu"})
    other = dict(common, params={"flow": to_dict(paper.flow), "train": {"batch_size": 7}})
    _write(tmp_path / "results/uci/miniboone/L2_H40/seed0/metrics.json",
           {**other, "throughput": {"steps_per_s": 5.0}})  # fmt: skip
    rows = {c.shape: c for c in costs(tmp_path, ["table1"], PAPER)}
    l1 = rows["miniboone L1_H10"]
    steps = paper.train.max_epochs * math.ceil(n / batch)
    assert l1.upper_bound and l1.steps == steps and l1.jobs == len(paper.seeds)
    assert l1.job_hours == pytest.approx(len(paper.seeds) * steps / 50.0 / 3600)
    # another batch size is another shape; its split size still sizes the paper's runs
    assert rows["miniboone L2_H40"].s_per_step is None
    assert rows["miniboone L2_H40"].steps == steps
    assert rows["power L1_H10"].steps is None  # no run, no prepared file: size unknown


def test_a_run_without_timing_is_one_error_naming_it(tmp_path: Path) -> None:
    paper = load_toy(PAPER / "toy.yaml")
    bnaf = to_dict(paper.energy.bnaf)
    _toy_run(tmp_path, "energy", "U1", "bnaf", bnaf, train_s=1.0, iterations=0)
    with pytest.raises(BnafError, match="energy/U1/bnaf/metrics.json"):
        costs(tmp_path, ["toy"], PAPER)


def test_without_the_paper_params_the_section_says_so(tmp_path: Path) -> None:
    rows = costs(tmp_path, ["toy", "table1"])  # a workdir with no params/paper
    assert rows is None
    lines, twin = cost_lines(rows)
    assert twin == [] and "paper budget is unknown" in lines[-1]
