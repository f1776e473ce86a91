"""GPU slots (bnaf/core/gpu.py), tested with fake GPU counts, a fake ``nvidia-smi`` and fake
SLURM allocations: no GPU needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bnaf.core.errors import BnafError
from bnaf.core.gpu import acquire, gpu_slot, lock_name, nvidia_smi_gpus, plan, visible_gpus

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


# ---------------------------------------------------------------- nvidia-smi, MIG and SLURM
SMI_PLAIN = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-11111111-2222-3333-4444-555555555555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)
"""
# GPU 0 is split into two MIG instances (one named in the old GPU/GI/CI form), GPU 1 is not.
SMI_MIG = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-11111111-2222-3333-4444-555555555555)
  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)
  MIG 3g.20gb     Device  1: (UUID: MIG-GPU-11111111-2222-3333-4444-555555555555/2/0)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)
"""
MIG_IDS = [
    "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "MIG-GPU-11111111-2222-3333-4444-555555555555/2/0",
    "1",
]
# Prints the device and the order its id is meant in, then holds the slot a while.
CHILD_ORDER = (
    "import os, time; e = os.environ; "
    "print(e.get('CUDA_VISIBLE_DEVICES', 'unset'), e.get('CUDA_DEVICE_ORDER', 'unset'), "
    "flush=True); time.sleep(2)"
)


def test_nvidia_smi_listing_gives_indices_and_mig_instances() -> None:
    assert nvidia_smi_gpus(SMI_PLAIN) == ["0", "1"]
    assert nvidia_smi_gpus(SMI_MIG) == MIG_IDS
    assert nvidia_smi_gpus("No devices were found\n") == []


def test_lock_names_are_plain_distinct_file_names() -> None:
    names = {lock_name(g, 0) for g in MIG_IDS}
    assert len(names) == 3 and not any("/" in n for n in names)


def _fake_smi(tmp_path: Path, listing: str) -> str:
    """A PATH whose nvidia-smi prints ``listing`` for ``-L``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{listing}END\n")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def _run_jobs(env: dict[str, str], jobs: int) -> list[tuple[str, str]]:
    cmd = [sys.executable, "-m", "bnaf", "gpu", "--slots-per-gpu", "1", "--"]
    procs = [
        subprocess.Popen(
            [*cmd, sys.executable, "-c", CHILD_ORDER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(jobs)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    return [tuple(o[0].split()) for o in outs]  # type: ignore[misc]


def test_mig_instances_from_nvidia_smi_are_pinned_in_pci_order(tmp_path: Path) -> None:
    env = _env(tmp_path, PATH=_fake_smi(tmp_path, SMI_MIG), CUDA_DEVICE_ORDER="FASTEST_FIRST")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    got = _run_jobs(env, 3)
    assert sorted(d for d, _ in got) == sorted(MIG_IDS)
    # nvidia-smi numbers GPUs in PCI bus order: the child must read the ids that way.
    assert {order for _, order in got} == {"PCI_BUS_ID"}
    assert len(list((tmp_path / "locks").glob("gpu*.lock"))) == 3


def test_ids_from_the_environment_keep_a_named_order(tmp_path: Path) -> None:
    env = _env(tmp_path, CUDA_VISIBLE_DEVICES="2,5", CUDA_DEVICE_ORDER="FASTEST_FIRST")
    assert {order for _, order in _run_jobs(env, 2)} == {"FASTEST_FIRST"}
    env.pop("CUDA_DEVICE_ORDER")
    got = _run_jobs(env, 2)
    assert sorted(got) == [("2", "PCI_BUS_ID"), ("5", "PCI_BUS_ID")]


@pytest.mark.parametrize(
    "allocation",
    [
        {"CUDA_VISIBLE_DEVICES": "4,5,6"},  # a batch job's step: SLURM sets the variable
        {"SLURM_JOB_GPUS": "4,5,6"},  # an salloc shell: only the job's GPU list
    ],
)
def test_slurm_job_with_several_gpus_spreads_its_steps(tmp_path: Path, allocation) -> None:
    env = _env(tmp_path, SLURM_JOB_ID="77", **allocation)
    if "CUDA_VISIBLE_DEVICES" not in allocation:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    got = _run_jobs(env, 3)
    assert sorted(d for d, _ in got) == ["4", "5", "6"]
    # The job's slots are its own: another job's "4" may be another device.
    (folder,) = (tmp_path / "locks").glob("slurm-77-*")
    assert len(list(folder.glob("gpu*.lock"))) == 3
    assert not list((tmp_path / "locks").glob("gpu*.lock"))


def test_plan_inside_slurm(tmp_path: Path) -> None:
    base = {"BNAF_GPU_LOCK_DIR": str(tmp_path), "SLURM_JOB_ID": "9"}
    assert plan(base | {"CUDA_VISIBLE_DEVICES": "3"}).gpus == []
    assert plan(base).gpus == [] and "0 GPU" in plan(base).reason
    assert plan(base | {"SLURM_STEP_GPUS": "1,2"}).gpus == ["1", "2"]
    # What SLURM set wins over a fake count.
    assert plan(base | {"BNAF_GPUS": "4", "CUDA_VISIBLE_DEVICES": "0,1"}).gpus == ["0", "1"]
