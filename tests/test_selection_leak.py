"""Selection (Section 5.3) reads the validation split only: the test split never moves it.

A config is chosen by its mean validation log-likelihood over seeds; the test figures of the
chosen config are then reported as mean and std over its seeds. Perturbing every test number,
however strongly (so that the test split would favour another config), must change neither the
choice nor anything but the reported test summary.
"""

from __future__ import annotations

import copy
import math
import random

import pytest

from bnaf.uci.select import select


def _run(config: str, seed: int, val: float, test: float, params: int) -> dict:
    layers, hidden = (int(x[1:]) for x in config.split("_"))
    return {
        "dataset": "toy", "config": config, "layers": layers, "hidden_factor": hidden,
        "seed": seed, "budget": "quick", "reduced": True, "model": {"dim": 3},
        "parameters": {"paper": params, "full": params + 10}, "best_epoch": 3,
        "epochs_run": 9, "validation": {"log_likelihood": val}, "test": {"log_likelihood": test},
        "wall_s": 1.0, "device": "cpu", "environment": {"processor": "x"}, "train_samples": 50,
    }  # fmt: skip


# validation means: L1_H10 0.40, L2_H20 0.50 (best), L2_H40 0.45; the test split favours L2_H40
RUNS = [
    _run("L1_H10", 0, 0.40, 0.70, 100),
    _run("L1_H10", 1, 0.41, 0.71, 100),
    _run("L1_H10", 2, 0.39, 0.69, 100),
    _run("L2_H20", 0, 0.55, 0.10, 200),
    _run("L2_H20", 1, 0.45, 0.20, 200),
    _run("L2_H20", 2, 0.50, 0.30, 200),
    _run("L2_H40", 0, 0.45, 0.90, 400),
    _run("L2_H40", 1, 0.44, 0.95, 400),
    _run("L2_H40", 2, 0.46, 0.99, 400),
]


def test_selects_the_highest_mean_validation_not_test() -> None:
    result = select(copy.deepcopy(RUNS), "toy", std_ddof=0)
    assert result["selected"] == "L2_H20"
    assert result["validation_mean"] == pytest.approx(0.50)
    # the chosen config's test figures, by hand: mean and ddof-0 std of 0.1, 0.2, 0.3
    assert result["test_mean"] == pytest.approx(0.2)
    assert result["test_std"] == pytest.approx(math.sqrt(((0.1) ** 2 + 0 + 0.1**2) / 3))
    assert result["n_seeds"] == 3


@pytest.mark.parametrize("trial", range(5))
def test_perturbing_the_test_split_never_moves_the_selection(trial: int) -> None:
    base = select(copy.deepcopy(RUNS), "toy", std_ddof=1)
    rng = random.Random(trial)
    runs = copy.deepcopy(RUNS)
    for r in runs:
        r["test"]["log_likelihood"] += rng.uniform(-50, 50)
    moved = select(runs, "toy", std_ddof=1)
    assert moved["selected"] == base["selected"] == "L2_H20"
    assert moved["validation_mean"] == base["validation_mean"]
    chosen = [r["test"]["log_likelihood"] for r in runs if r["config"] == "L2_H20"]
    assert moved["test_mean"] == pytest.approx(sum(chosen) / 3)
    for name, summary in moved["configs"].items():  # only the test entries changed
        other = base["configs"][name]
        same = {k for k in summary if not k.startswith("test")}
        assert {k: summary[k] for k in same} == {k: other[k] for k in same}


def test_perturbing_validation_does_move_the_selection() -> None:
    # the converse: raising one config's validation figures makes it the choice
    runs = copy.deepcopy(RUNS)
    for r in runs:
        if r["config"] == "L1_H10":
            r["validation"]["log_likelihood"] += 1.0
    assert select(runs, "toy", std_ddof=0)["selected"] == "L1_H10"


def test_seed_order_does_not_matter_and_a_tie_goes_to_the_smaller_model() -> None:
    shuffled = copy.deepcopy(RUNS)
    random.Random(0).shuffle(shuffled)
    assert select(shuffled, "toy", 0)["selected"] == "L2_H20"
    tie = [_run("L2_H40", 0, 0.5, 0.0, 400), _run("L1_H10", 0, 0.5, 0.0, 100)]
    assert select(tie, "toy", 0)["selected"] == "L1_H10"
    tie = [_run("L1_H10", 0, 0.5, 0.0, 100), _run("L2_H40", 0, 0.5, 0.0, 400)]
    assert select(tie, "toy", 0)["selected"] == "L1_H10"
