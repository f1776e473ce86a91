"""The pipeline through a real single-node SLURM (slurmctld, slurmd, munge) and the SLURM profile.

tests/slurm/start.sh starts private daemons (own ports, own munge socket) in a temporary folder,
the tests submit tiny versions of the pipeline with ``--profile profiles/slurm-local`` and check
that the jobs really went through SLURM (job ids, SLURM logs, states) and that the outputs are
right, and stop.sh stops the daemons by their PID files. Under ``CI=true`` a SLURM that cannot
start is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from params_edit import edit_params
from uci_synthetic import write_prepared

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "tests" / "slurm"
pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    """A running SLURM; yields the environment that points clients at it."""
    missing = [x for x in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(x)]
    if missing:
        _unavailable(f"not installed: {', '.join(missing)} (see .ci/run for the apt-get line)")
    if os.geteuid() != 0:
        _unavailable("the test cluster's daemons need root")
    # Not under pytest's private tmp: munged (user munge) must be able to enter the folder.
    state = Path(tempfile.mkdtemp(prefix="bnaf-slurm-", dir="/tmp"))
    try:
        started = subprocess.run(
            ["bash", str(SLURM / "start.sh"), str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if started.returncode != 0:
            _unavailable(f"start.sh failed: {started.stderr.strip()[-2000:]}")
        path = f"{state / 'bin'}:{os.environ.get('PATH', '')}"
        yield {**os.environ, "PATH": path, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SLURM / "stop.sh"), str(state)], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def _workdir(tmp_path: Path, edit: dict[str, dict]) -> Path:
    """A copy of the workflow with params/quick edited (section -> {dotted key: value})."""
    for name in ("Snakefile", "workflow", "params", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    for section, changes in edit.items():
        edit_params(tmp_path / "params" / "quick" / f"{section}.yaml", section, changes)
    return tmp_path


def _snakemake(
    workdir: Path, env: dict[str, str], *targets: str, timeout: float = 400
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm-local", *targets]
    cmd += ["--config", "params=params/quick"]
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


def _slurm_jobs(env: dict[str, str]) -> dict[str, str]:
    """job id -> state of every job the controller still knows (MinJobAge keeps finished ones)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i %T"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _slurm_logs(workdir: Path, rule: str) -> dict[str, Path]:
    logs = (workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log")
    return {p.stem: p for p in logs}


def test_sbatch_gpu_job_keeps_slurm_assignment(slurm: dict[str, str], tmp_path: Path) -> None:
    """A --gpus=1 job gets CUDA_VISIBLE_DEVICES from SLURM; the GPU wrapper leaves it alone."""
    out = tmp_path / "gpu.out"
    # BNAF_GPUS pretends 4 local GPUs: outside SLURM the wrapper would pick one itself.
    wrap = f"{sys.executable} -m bnaf gpu -- printenv CUDA_VISIBLE_DEVICES"
    subprocess.run(
        ["sbatch", "--wait", "--gpus=1", "-o", str(out), "--wrap", wrap],
        env={**slurm, "BNAF_GPUS": "4", "BNAF_GPU_LOCK_DIR": str(tmp_path)},
        check=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    text = out.read_text()
    assert "SLURM job" in text and "running unpinned" in text
    assert text.strip().splitlines()[-1] == "0"


def test_toy_part_through_slurm(slurm: dict[str, str], tmp_path: Path) -> None:
    edit = {
        "toy": {
            "density.targets": ["8gaussians"],
            "density.models": ["bnaf"],
            "density.test_samples": 2000,
            "density.grid_step": 0.2,
            "energy.targets": ["U1"],
            "energy.models": ["bnaf"],
            "energy.kl_samples": 2000,
            "energy.grid_step": 0.4,
            "log_every": 10,
            "density.bnaf.optimiser.iterations": 30,
            "energy.bnaf.optimiser.iterations": 30,
        }
    }
    workdir = _workdir(tmp_path, edit)
    start = time.monotonic()
    done = _snakemake(workdir, slurm, "reports/toy.md", "reports/toy.json")
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-4000:]

    # Each training job was an sbatch job: Snakemake names its id, SLURM kept its log, and the
    # controller saw it complete.
    submitted = set(re.findall(r"SLURM jobid (\d+)", done.stderr + done.stdout))
    logs = _slurm_logs(workdir, "toy_train")
    states = _slurm_jobs(slurm)
    assert len(logs) == 2, sorted(logs)
    assert set(logs) <= submitted
    assert all(states.get(job) == "COMPLETED" for job in logs), states
    # The cheap table rule stayed on the submitting host (localrules): no SLURM log of it.
    assert not _slurm_logs(workdir, "toy_table")

    toy = json.loads((workdir / "reports" / "toy.json").read_text())
    assert isinstance(toy.get("differences"), list)
    text = json.dumps(toy)
    assert "8gaussians" in text and "U1" in text
    for kind, target in (("density", "8gaussians"), ("energy", "U1")):
        metrics = workdir / "results" / "toy" / kind / target / "bnaf" / "metrics.json"
        assert json.loads(metrics.read_text())  # written by the job on the SLURM node
    print(f"toy through SLURM: {elapsed:.1f} s")


def test_killed_training_job_resumes_from_its_checkpoint(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    """scancel a UCI training job mid-run; the resubmitted job continues from its checkpoint."""
    epochs = 16
    edit = {
        "uci": {
            "datasets": ["power"],
            "seeds": [0],
            "grid.hidden_factor": [2],
            "train.max_epochs": epochs,
            "train.train_subset": None,
            "train.early_stopping": 1000,
            "train.patience": 1000,
        }
    }
    workdir = _workdir(tmp_path, edit)
    # A prepared dataset as the data part leaves it (status first: the HDF5 file is newer).
    status = workdir / "data" / "raw" / "power.status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"dataset": "power", "available": True, "reason": ""}))
    write_prepared(workdir / "data" / "prepared" / "power.h5", dim=6, sizes=(12000, 1000, 1000))
    run = workdir / "results" / "uci" / "power" / "L1_H2" / "seed0"
    target = str((run / "metrics.json").relative_to(workdir))
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm-local", target]
    cmd += ["--config", "params=params/quick"]

    first = subprocess.Popen(
        cmd, cwd=workdir, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoint.pt").exists():
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.2)
        running = [j for j, state in _slurm_jobs(slurm).items() if state == "RUNNING"]
        assert len(running) == 1, running
        subprocess.run(["scancel", running[0]], env=slurm, check=True)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, "the cancelled job should have failed the first run"
    assert _slurm_jobs(slurm)[running[0]] == "CANCELLED"
    assert not (run / "metrics.json").exists() and (run / "checkpoint.pt").exists()

    second = _snakemake(workdir, slurm, target)
    assert second.returncode == 0, second.stderr[-4000:]
    metrics = json.loads((run / "metrics.json").read_text())
    log = (workdir / "logs" / "uci_train" / "power" / "L1_H2" / "seed0.log").read_text()
    resumed = re.findall(r"resumed from .*checkpoint.pt at epoch (\d+)", log)
    assert len(resumed) == 1 and 1 <= int(resumed[0]) < epochs, log[-2000:]
    assert metrics["resumes"] == 1 and metrics["epochs_run"] == epochs
    # One continuous run: every epoch once, none repeated after the resubmission.
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, epochs + 1))
    assert len(_slurm_logs(workdir, "uci_train")) == 2  # two SLURM jobs for the one run
