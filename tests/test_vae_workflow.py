"""The Snakemake target for Table 2, end to end on tiny fixture data in a temporary copy."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.io import savemat

ROOT = Path(__file__).resolve().parents[1]


def _fixtures(mirror: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    sums = {}
    for split, n in (("train", 30), ("valid", 10), ("test", 10)):
        name = f"mnist_static/binarized_mnist_{split}.amat"
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        rows = rng.integers(0, 2, (n, 784))
        (mirror / name).write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
        sums[name] = "sha256:" + hashlib.sha256((mirror / name).read_bytes()).hexdigest()
    frey = mirror / "freyfaces" / "frey_rawface.mat"
    frey.parent.mkdir(parents=True)
    savemat(frey, {"ff": rng.integers(0, 256, (560, 40)).astype(np.uint8)})
    sums["freyfaces/frey_rawface.mat"] = "md5:" + hashlib.md5(frey.read_bytes()).hexdigest()
    return sums


@pytest.mark.slow
def test_table2_target_end_to_end(tmp_path):
    for item in ("Snakefile", "workflow"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    params = tmp_path / "params" / "tiny"
    shutil.copytree(ROOT / "params" / "quick", params)
    data = yaml.safe_load((params / "data.yaml").read_text())
    data["data"].update(mirror=str(tmp_path / "mirror"), checksums=_fixtures(tmp_path / "mirror"))
    data["data"]["retries"] = 0
    (params / "data.yaml").write_text(yaml.safe_dump(data))
    vae = yaml.safe_load((params / "vae.yaml").read_text())
    vae["vae"].update(
        datasets=["mnist", "omniglot"], grid=[{"flows": 2, "hidden_factor": 1}],
        best={"flows": 2, "hidden_factor": 1}, seeds=[1, 2], latent=8, max_epochs=1,
        warmup_epochs=1, train_subset=20, valid_subset=None, test_subset=None,
        check_sizes=False, nll_samples={"mnist": 3, "freyfaces": 3, "omniglot": 3},
    )  # fmt: skip
    (params / "vae.yaml").write_text(yaml.safe_dump(vae))
    # Omniglot is offline: its download status (as the checkpoint writes it) says so.
    status = tmp_path / "data" / "raw" / "omniglot.status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"dataset": "omniglot", "available": False,
                                  "reason": "cannot obtain omniglot/chardata.mat",
                                  "how_to_supply": "put it in the mirror"}))  # fmt: skip
    cmd = ["snakemake", "--cores", "2", "reports/table2.md", "--config", "params=params/tiny"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "reports" / "table2.md").read_text()
    table = json.loads((tmp_path / "reports" / "table2.json").read_text())
    assert "Reduced budget" in md and "cannot obtain omniglot/chardata.mat" in md
    assert {n["dataset"] for n in table["not_run"]} == {"omniglot", "freyfaces", "caltech101"}
    cell = table["ours"]["bnaf-K2-H1d"]["mnist"]["test_nll"]
    assert cell["n"] == 2 and cell["unit"] == "nats" and cell["paper"] == 80.71
    assert cell["diff_in_paper_std"] == pytest.approx((cell["mean"] - 80.71) / 0.09)
    assert table["ours"]["vae"]["mnist"]["test_neg_elbo"]["n"] == 2
    assert table["grid"]["best_on_validation"] == "bnaf-K2-H1d"
    assert table["counts"]["models"]["bnaf"]["values_per_datapoint"] == 7680
    for seed in (1, 2):
        run = tmp_path / "results" / "vae" / "mnist" / "vae" / f"seed{seed}"
        assert json.loads((run / "metrics.json").read_text())["seed"] == seed
