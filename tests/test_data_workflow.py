"""End to end, offline: `snakemake --cores 2 data` in a temporary copy of the workflow, with a
fixture MAF archive as the mirror (all five datasets prepared), and with no mirror (every
dataset named "not run" with what to download and where to put it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from uci_fixture import write_fixture_archive

from bnaf.data.store import read_attrs, read_prepared

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["power", "gas", "hepmass", "miniboone", "bsds300"]
ROWS = {"power": 400, "gas": 300, "hepmass": 300, "miniboone": 150, "bsds300": 60}


def _workflow(tmp: Path, mirror: str, checksums: str = "{}", urls: str = "{}") -> Path:
    shutil.copy(ROOT / "Snakefile", tmp / "Snakefile")
    (tmp / "workflow" / "rules").mkdir(parents=True)
    shutil.copytree(ROOT / "workflow" / "schemas", tmp / "workflow" / "schemas")
    for rules in ("common.smk", "data.smk"):
        shutil.copy(ROOT / "workflow" / "rules" / rules, tmp / "workflow" / "rules" / rules)
    params = tmp / "params" / "test"
    params.mkdir(parents=True)
    text = (ROOT / "params" / "quick" / "data.yaml").read_text()
    for old, new in [
        ("mirror: ../shared/data", f"mirror: {mirror}"),
        ("checksums: {}", f"checksums: {checksums}"),
        ("urls: {}", f"urls: {urls}"),
        ("retries: 3", "retries: 0"),
        ("timeout_s: 60", "timeout_s: 2"),
    ]:
        assert old in text
        text = text.replace(old, new)
    (params / "data.yaml").write_text(text)
    return params


def _snakemake(tmp: Path, params: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BNAF_MIRROR"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "data", "--config"]
        + [f"params={params.relative_to(tmp)}"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_snakemake_data_with_fixture_mirror(tmp_path):
    md5 = write_fixture_archive(tmp_path / "mirror" / "data.tar.gz", rows=ROWS)
    params = _workflow(tmp_path, "mirror", checksums=f'{{maf/data.tar.gz: "md5:{md5}"}}')
    run = _snakemake(tmp_path, params)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in NAMES:
        status = json.loads((tmp_path / "data" / "raw" / f"{name}.status.json").read_text())
        assert status["available"] is True
        out = tmp_path / "data" / "prepared" / f"{name}.h5"
        splits = read_prepared(out)
        assert all(len(splits[s]) > 0 for s in ("train", "validation", "test"))
        assert read_attrs(out)["checksum_source"] == {"maf/data.tar.gz": "override"}


@pytest.mark.slow
def test_snakemake_data_without_mirror_names_what_to_supply(tmp_path):
    with socket.socket() as s:  # a closed local port stands for the unreachable Zenodo
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/data.tar.gz"
    params = _workflow(tmp_path, "no-such-folder", urls=f'{{maf/data.tar.gz: ["{url}"]}}')
    run = _snakemake(tmp_path, params)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (tmp_path / "data" / "prepared").exists()
    for name in NAMES:
        status = json.loads((tmp_path / "data" / "raw" / f"{name}.status.json").read_text())
        assert status["available"] is False and status["dataset"] == name
        assert "maf/data.tar.gz (md5:9b9c9b0375315ad270eba4ce80c093ab)" in status["reason"]
        assert url in status["reason"] and url in status["how_to_supply"]
        assert "data/raw/maf/data.tar.gz" in status["how_to_supply"]
        assert "no-such-folder/data.tar.gz" in status["how_to_supply"]
