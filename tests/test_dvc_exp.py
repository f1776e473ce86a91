"""``dvc exp run -S ...`` then ``dvc exp show`` compares runs by their numbers (README, "With
DVC"), in a temporary git repository holding the pipeline at a tiny budget (the ``repo``
fixture of test_dvc.py: toy at a few iterations, Table 1 on the fake MAF archive).

The baseline runs as an experiment too, as a user would before committing; each experiment's
commit must hold the per-part metrics files, so ``dvc exp show`` prints Table 1's numbers for
both runs (it prints ``!`` for a metrics file an experiment did not record).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_dvc import _run, _stages_run, repo  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow
TABLE1 = "reports/metrics/table1.json"


def _experiments(shown: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Experiment name -> {"params": ..., "metrics": ...} from `dvc exp show --json`."""
    out = {}
    for row in shown:
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                out[rev.get("name") or data.get("rev")] = {
                    "metrics": {k: v.get("data") for k, v in (data.get("metrics") or {}).items()},
                    "params": {k: v.get("data") for k, v in (data.get("params") or {}).items()},
                }
    return out


def test_exp_show_puts_the_table1_numbers_of_two_runs_side_by_side(
    repo: tuple[Path, dict[str, str]],  # noqa: F811
) -> None:
    work, env = repo
    first = _run(["dvc", "exp", "run", "-n", "base"], work, env, timeout=1800)
    assert "uci" in _stages_run(first)
    base_ll = json.loads((work / "reports" / "table1.json").read_text())["results"][0]
    base_ll = base_ll["test_ll"]["ours"]["mean"]
    second = _run(
        ["dvc", "exp", "run", "-n", "lr", "-S", "params/quick/uci.yaml:uci.train.lr=0.005"],
        work,
        env,
        timeout=1800,
    )
    assert _stages_run(second) == {"inventory", "uci", "normalisation", "report"}, second[-2000:]
    lr_ll = json.loads((work / "reports" / "table1.json").read_text())["results"][0]
    lr_ll = lr_ll["test_ll"]["ours"]["mean"]
    assert lr_ll != base_ll  # another learning rate, another model

    exps = _experiments(json.loads(_run(["dvc", "exp", "show", "--json"], work, env)))
    assert {"base", "lr"} <= set(exps), sorted(exps)
    for name, ll in (("base", base_ll), ("lr", lr_ll)):
        metrics = exps[name]["metrics"]
        assert metrics[TABLE1]["power_test_ll"] == ll, name
        assert "8gaussians_bnaf_test_ll" in metrics["reports/metrics/toy.json"]
    lr = exps["lr"]["params"]["params/quick/uci.yaml"]["uci"]["train"]["lr"]
    assert lr == 0.005
    # The table a user reads: a power_test_ll column with both runs' numbers (not "!").
    table = _run(["dvc", "exp", "show", "--no-pager", "--md", "--only-changed"], work, env)
    head = table.splitlines()[0].split("|")
    rows = [line.split("|") for line in table.splitlines() if "[base]" in line or "[lr]" in line]
    assert len(rows) == 2, table
    column = next(i for i, h in enumerate(head) if h.strip() == "power_test_ll")
    shown = sorted(float(r[column]) for r in rows)  # printed to 5 significant digits
    assert shown == pytest.approx(sorted([base_ll, lr_ll]), rel=1e-4)
