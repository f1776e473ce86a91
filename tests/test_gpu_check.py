"""``make gpu-check`` (benchmarks/gpu_check.py): one clear line without CUDA; on the CPU, a
smoke run of every part at toy sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str, cuda_hidden: bool = True) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    if cuda_hidden:  # no CUDA device, even on a machine with one
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_without_cuda_it_says_so_in_one_line_and_fails() -> None:
    out = _run()
    assert out.returncode == 1
    assert out.stdout.strip().count("\n") == 0 and not out.stderr.strip()
    assert "no CUDA device" in out.stdout and "nothing was checked" in out.stdout


def test_a_cpu_run_must_be_a_smoke_run() -> None:
    out = _run("--device", "cpu")
    assert out.returncode == 2 and "--smoke" in out.stderr


@pytest.mark.slow  # every part at toy sizes: about a minute of CPU on 2 cores
def test_smoke_run_prints_one_table_with_every_part() -> None:
    out = _run("--device", "cpu", "--smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("| check") and all(line.startswith("|") for line in lines)
    checks = [line.split("|")[1].strip() for line in lines[2:]]
    for part in ("device", "numerics", "CUDA tests", "step tiny", "step tiny fused Adam",
                 "pack tiny", "epoch POWER-sized",
                 "epoch BSDS300-sized", "VAE step", "IS NLL", "total"):  # fmt: skip
        assert any(c.startswith(part) for c in checks), part
