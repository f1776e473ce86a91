"""Data supplied after a first offline ``dvc repro`` is used by the next plain ``dvc repro``
(README, "With DVC"), in a temporary git repository holding the pipeline at a tiny budget (the
``repo`` fixture of test_dvc.py) whose mirror folder lies outside the repository.

The first repro runs with the MAF archive nowhere and its URL unreachable: Table 1 names POWER
"not run". The fixture archive is then put in the mirror folder and the very same ``dvc repro``
re-runs the data stage (its ``inventory`` dependency changed) and fills Table 1; the parts that
do not read the data (toy, VAE) stay untouched, and a further repro runs only the inventory.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from params_edit import edit_params
from test_dvc import _run, _stages_run, repo  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def test_archive_put_in_the_mirror_after_an_offline_repro_fills_table1(
    repo: tuple[Path, dict[str, str]],  # noqa: F811
) -> None:
    work, env = repo
    mirror = work.parent / "mirror"  # outside the repository, named in data.yaml
    archive = mirror / "data.tar.gz"
    kept = work.parent / "kept.tar.gz"
    archive.replace(kept)
    with socket.socket() as s:  # a port nobody listens on: the download fails at once
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/data.tar.gz"
    edit_params(
        work / "params" / "quick" / "data.yaml", "data", {"urls": {"maf/data.tar.gz": [url]}}
    )

    first = _run(["dvc", "repro"], work, env, timeout=1800)
    assert {"inventory", "data", "uci"} <= _stages_run(first)
    table = json.loads((work / "reports" / "table1.json").read_text())
    assert table["results"] == [] and "power" in {n["dataset"] for n in table["not_run"]}
    status = json.loads((work / "data" / "raw" / "power.status.json").read_text())
    assert status["available"] is False and str(archive) in status["looked_for"]

    # Nothing supplied: only the inventory runs, and its unchanged output re-runs nothing.
    assert _stages_run(_run(["dvc", "repro"], work, env)) == {"inventory"}

    shutil.copy2(kept, archive)  # an old file: its modification time predates the status
    second = _run(["dvc", "repro"], work, env, timeout=1800)
    assert _stages_run(second) == {"inventory", "data", "uci", "normalisation", "report"}
    table = json.loads((work / "reports" / "table1.json").read_text())
    assert [r["dataset"] for r in table["results"]] == ["power"]
    assert isinstance(table["results"][0]["test_ll"]["ours"]["mean"], float)
    assert "power_test_ll" in (work / "reports" / "metrics" / "table1.json").read_text()

    third = _run(["dvc", "repro"], work, env)
    assert _stages_run(third) == {"inventory"}, third[-2000:]
