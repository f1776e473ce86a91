"""The training-step benchmark runs end to end in a smoke mode (one tiny model, two steps),
with pyro when it is installed and without it (its column is then skipped), and with the
compiled side (``--compile``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
HAVE_PYRO = importlib.util.find_spec("pyro") is not None


@pytest.mark.slow  # two interpreter starts with torch (and pyro), one compiles: ~5 s and ~30 s
@pytest.mark.parametrize(
    "extra",
    [
        ["--no-pyro", "--compile"],
        pytest.param([], marks=pytest.mark.skipif(not HAVE_PYRO, reason="no pyro")),
    ],
)
def test_benchmark_smoke(tmp_path: Path, extra: list[str]) -> None:
    out_json = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--steps", "2", "--repeats", "1"]
    cmd += ["--warmup", "0", "--json", str(out_json), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "tiny" in out.stdout
    result = json.loads(out_json.read_text())
    (row,) = result["rows"]
    # every stored entry: per flow 3->6 (18+6+6), 6->6 (36+6+6), 6->3 (18+3+3) = 102; 2 flows
    # and one gate
    assert row["params"] == 205
    assert row["ours"] > 0 and row["authors"] > 0
    # ours stepped by the fused Adam (the paper budget's optimiser), beside the dense products
    assert row["ours-fused"] > 0 and "time ours-fused/products" in out.stdout
    assert row["fused/ours"] == pytest.approx(row["ours-fused"] / row["ours"])
    assert row["time ours-fused/products"] == pytest.approx(row["products"] / row["ours-fused"])
    if extra:
        assert row["pyro"] is None and result["pyro"].startswith("skipped")
        # the compiled side: its rate and its ratios to ours and the authors' approach
        assert row["ours-compiled"] > 0 and "compiled/ours" in out.stdout
        assert row["compiled/ours"] == pytest.approx(row["ours-compiled"] / row["ours"])
        assert row["compiled/authors"] == pytest.approx(row["ours-compiled"] / row["authors"])
    else:
        assert row["pyro"] > 0 and row["ours-compiled"] is None


@pytest.mark.slow  # one interpreter start with torch
def test_toy_pack_benchmark_smoke() -> None:
    script = SCRIPT.with_name("toy_pack.py")
    out = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[2:]}
    assert set(rows) == {"glow", "planar"}
    assert rows["glow"][1] == "3" and rows["planar"][1] == "4"  # Figure 2's and 3's runs
    assert all(float(r[4]) > 0 for r in rows.values())  # packed/separate, a ratio
