"""Data supplied after a first offline run is used by the next plain run (README, "Offline
machines"): ``snakemake reports/table1.md`` with the MAF archive nowhere (Table 1 names POWER
"not run"), then the fixture archive put in the mirror folder the status names, then the very
same command: Table 1 is filled, and a further run has nothing to do.

The download status records where it looked (``looked_for``) and whether the network failed
(``transient``); the data_download checkpoint takes the looked-for paths that exist as inputs,
so a file appearing there re-runs it (bnaf.data.recheck.watch).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_uci_workflow import _workdir
from uci_fixture import write_fixture_archive

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _snakemake(work: Path, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "reports/table1.md"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_archive_put_in_the_mirror_after_an_offline_run_fills_table1(tmp_path: Path) -> None:
    work = _workdir(
        tmp_path,
        {"datasets": ["power"], "seeds": [0], "train.max_epochs": 1, "grid.hidden_factor": [2]},
    )
    archive = tmp_path / "mirror" / "data.tar.gz"
    kept = tmp_path / "kept.tar.gz"
    archive.replace(kept)  # offline: the mirror folder is empty and the URL unreachable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/data.tar.gz"
    data_yaml = work / "params" / "quick" / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    data["data"] |= {"datasets": ["power"], "urls": {"maf/data.tar.gz": [url]}}
    data_yaml.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != "BNAF_MIRROR"}
    env["PYTHONPATH"] = str(ROOT)

    _snakemake(work, env)
    table = json.loads((work / "reports" / "table1.json").read_text())
    assert table["results"] == [] and "power" in {n["dataset"] for n in table["not_run"]}
    status = json.loads((work / "data" / "raw" / "power.status.json").read_text())
    assert status["available"] is False and status["transient"] is True  # URL was tried
    assert str(archive) in status["looked_for"] and str(archive) in status["how_to_supply"]

    # The network failure alone is retried by the next run (the status is rewritten).
    before = (work / "data" / "raw" / "power.status.json").stat().st_mtime_ns
    again = _snakemake(work, env)
    assert "data_download" in again
    assert (work / "data" / "raw" / "power.status.json").stat().st_mtime_ns > before

    shutil.copy2(kept, archive)  # an old file: its modification time predates the status
    _snakemake(work, env)
    table = json.loads((work / "reports" / "table1.json").read_text())
    assert [r["dataset"] for r in table["results"]] == ["power"]
    assert isinstance(table["results"][0]["test_ll"]["ours"]["mean"], float)

    last = _snakemake(work, env)
    assert "Nothing to be done" in last, last[-2000:]


def test_a_checksum_mismatch_is_not_retried_silently(tmp_path: Path) -> None:
    work = _workdir(tmp_path, {"datasets": ["power"]})
    write_fixture_archive(tmp_path / "mirror" / "data.tar.gz", rows={"power": 50})  # other md5
    env = {k: v for k, v in os.environ.items() if k != "BNAF_MIRROR"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "data/raw/power.status.json"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0  # a damaged file is an error, not "not run"
    log = (work / "logs" / "data_download" / "power.log").read_text()
    assert "checksum" in log and not (work / "data" / "raw" / "power.status.json").exists()
