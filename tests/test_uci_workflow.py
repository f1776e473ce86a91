"""``snakemake reports/table1.md`` end to end on the fake MAF archive, in a temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from uci_fixture import write_fixture_archive

ROOT = Path(__file__).resolve().parents[1]
MAF_ARCHIVE = "maf/data.tar.gz"


def _workdir(tmp_path: Path, uci_overrides: dict) -> Path:
    """Snakefile, the data and uci rules, and params with a tiny budget and a fixture mirror."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "params" / "quick", work / "params" / "quick")  # the schema needs all
    shutil.copy(ROOT / "Snakefile", work)
    shutil.copytree(ROOT / "workflow", work / "workflow")
    for rules in (work / "workflow" / "rules").glob("*.smk"):
        if rules.stem not in ("common", "data", "uci"):
            rules.unlink()  # other parts are tested on their own
    md5 = write_fixture_archive(tmp_path / "mirror" / "data.tar.gz")
    data = yaml.safe_load((ROOT / "params" / "quick" / "data.yaml").read_text())
    data["data"] |= {"mirror": str(tmp_path / "mirror"), "retries": 0, "timeout_s": 1}
    data["data"]["checksums"] = {MAF_ARCHIVE: f"md5:{md5}"}
    uci = yaml.safe_load((ROOT / "params" / "quick" / "uci.yaml").read_text())
    for key, value in uci_overrides.items():
        section, _, name = key.rpartition(".")
        (uci["uci"][section] if section else uci["uci"])[name] = value
    for name, content in (("data", data), ("uci", uci)):
        (work / "params" / "quick" / f"{name}.yaml").write_text(yaml.safe_dump(content))
    return work


@pytest.mark.slow
def test_table1_target_end_to_end(tmp_path: Path) -> None:
    work = _workdir(
        tmp_path,
        {
            "datasets": ["power"],
            "seeds": [0, 1],
            "train.max_epochs": 2,
            "grid.hidden_factor": [2, 4],
        },
    )
    env = os.environ | {"BNAF_MIRROR": str(tmp_path / "mirror"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["snakemake", "--cores", "2", "reports/table1.md"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((work / "reports" / "table1.json").read_text())
    assert [r["dataset"] for r in table["results"]] == ["power"]
    assert {n["dataset"] for n in table["not_run"]} == {"gas", "hepmass", "miniboone", "bsds300"}
    for r in table["results"]:
        sel = json.loads((work / "results" / "uci" / r["dataset"] / "selection.json").read_text())
        assert (
            set(sel["configs"]) == {"L1_H2", "L1_H4"} and r["selected_config"] == sel["selected"]
        )
        best = max(sel["configs"].values(), key=lambda c: c["validation_mean"])
        assert r["test_ll"]["ours"]["mean"] == best["test_mean"] and best["seeds"] == [0, 1]
    md = (work / "reports" / "table1.md").read_text()
    assert "B-NAF (ours, quick, REDUCED)" in md and "not in this budget's datasets" in md
    assert (work / "reports" / "table1.csv").read_text().count(
        "\n"
    ) == 1 + 9 + 8  # header, published, ours
    # uci.resources.pack_seeds: one job per grid point trains both seeds as one pack
    assert not (work / "logs" / "uci_train" / "power" / "L1_H2").exists()
    log = (work / "logs" / "uci_train" / "power" / "L1_H2.log").read_text()
    assert "seeds 0 1" in log and "seed 1 epoch    2/2" in log
    assert "done (seed 0): best epoch" in log and "done (seed 1): best epoch" in log
    assert proc.stderr.count("rule uci_train:") == 2, proc.stderr[-3000:]
