"""GPU slots for local runs (bnaf/gpu.py), tested with fake GPU counts: no GPU needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bnaf.core.errors import BnafError
from bnaf.core.gpu import acquire, gpu_slot, visible_gpus

# The child prints its device, then holds the slot a while so the jobs overlap.
CHILD = "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); "


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "BNAF_GPUS")}
    env.update(BNAF_GPU_LOCK_DIR=str(tmp_path / "locks"), **extra)
    return env


def _launch(env: dict[str, str], seconds: float, *opts: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bnaf", "gpu", *opts, "--", sys.executable, "-c"]
    return subprocess.Popen(
        [*cmd, CHILD + f"time.sleep({seconds})"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BNAF_GPUS": "3"}, ["0", "1", "2"]),
        ({"BNAF_GPUS": "1,3"}, ["1", "3"]),
        ({"BNAF_GPUS": "0"}, []),
        ({"CUDA_VISIBLE_DEVICES": "2,5"}, ["2", "5"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ],
)
def test_visible_gpus(env: dict[str, str], expected: list[str]) -> None:
    assert visible_gpus(env) == expected


@pytest.mark.parametrize(("gpus", "jobs"), [(2, 4), (3, 3), (2, 5)])
def test_slots_spread_jobs_evenly_and_are_released(tmp_path: Path, gpus: int, jobs: int) -> None:
    held = [acquire([str(i) for i in range(gpus)], folder=tmp_path) for _ in range(jobs)]
    counts = Counter(s.device for s in held)
    # Least-loaded first: the per-GPU loads differ by at most one.
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == jobs and len(counts) == min(gpus, jobs)
    assert len({(s.device, s.index) for s in held}) == jobs
    for s in held:
        s.release()
    # Released: the next taker finds GPU 0 slot 0 free again.
    again = acquire([str(i) for i in range(gpus)], folder=tmp_path)
    assert (again.device, again.index) == ("0", 0)
    again.release()


def test_full_gpus_make_the_next_job_wait(tmp_path: Path) -> None:
    first = acquire(["0"], slots_per_gpu=1, folder=tmp_path)
    with pytest.raises(BnafError, match="no free GPU slot"):
        acquire(["0"], slots_per_gpu=1, folder=tmp_path, timeout=0.3, poll=0.05)
    first.release()
    acquire(["0"], slots_per_gpu=1, folder=tmp_path, timeout=0.3).release()


def test_concurrent_processes_get_distinct_gpus(tmp_path: Path) -> None:
    env = _env(tmp_path, BNAF_GPUS="3")
    procs = [_launch(env, 2.0, "--slots-per-gpu", "1") for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert sorted(o[0].strip() for o in outs) == ["0", "1", "2"]


def test_more_jobs_than_slots_queue_and_then_reuse_the_freed_slot(tmp_path: Path) -> None:
    env = _env(tmp_path, BNAF_GPUS="1")
    start = time.monotonic()
    procs = [_launch(env, 1.5, "--slots-per-gpu", "1") for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    # One slot: the second job waits for the first to finish (sequential, both on GPU 0).
    assert time.monotonic() - start >= 3.0
    assert [o[0].strip() for o in outs] == ["0", "0"]


def test_slurm_assignment_is_left_alone(tmp_path: Path) -> None:
    env = _env(tmp_path, BNAF_GPUS="4", SLURM_JOB_ID="123", CUDA_VISIBLE_DEVICES="7")
    out, err = _launch(env, 0, "--slots-per-gpu", "1").communicate(timeout=60)
    assert out.strip() == "7" and "SLURM job" in err
    assert not any((tmp_path / "locks").glob("gpu*.lock"))


def test_no_gpu_runs_unpinned_and_passes_the_exit_code(tmp_path: Path) -> None:
    env = _env(tmp_path, BNAF_GPUS="0")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out, _ = _launch(env, 0).communicate(timeout=60)
    assert out.strip() == "unset"
    cmd = [sys.executable, "-m", "bnaf", "gpu", "--", sys.executable, "-c", "raise SystemExit(3)"]
    assert subprocess.run(cmd, env=_env(tmp_path, BNAF_GPUS="2")).returncode == 3


def test_in_process_slot_sets_and_restores_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BNAF_GPUS", "2")
    monkeypatch.setenv("BNAF_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with gpu_slot() as a, gpu_slot() as b:
        assert {a, b} == {"0", "1"}
        assert os.environ["CUDA_VISIBLE_DEVICES"] == b
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_killed_job_frees_its_slot(tmp_path: Path) -> None:
    env = _env(tmp_path, BNAF_GPUS="1")
    job = _launch(env, 60, "--slots-per-gpu", "1")
    assert job.stdout.readline().strip() == "0"  # running, after exec, on GPU 0
    # The exec'd command itself holds the slot: nobody else gets it meanwhile.
    with pytest.raises(BnafError, match="no free GPU slot"):
        acquire(["0"], slots_per_gpu=1, folder=tmp_path / "locks", timeout=0.3, poll=0.05)
    job.kill()
    job.wait(timeout=30)
    acquire(["0"], slots_per_gpu=1, folder=tmp_path / "locks", timeout=5).release()
