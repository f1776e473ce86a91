r"""``python -m bnaf gpu``: pin a local job to one GPU, ``python -m bnaf gpu -- <command ...>``.

Snakemake's ``resources: gpu=1`` with ``--resources gpu=K`` only limits how many GPU jobs run at
once; it does not say *which* device a local job should use. This wrapper does: it takes a slot
on the least-loaded visible GPU (an exclusive ``flock`` on a file ``gpu<id>.slot<j>.lock``), runs
the command with ``CUDA_VISIBLE_DEVICES=<id>`` (replacing itself by it, so no wrapper process
lingers), and the slot is freed when the command ends (the kernel drops the lock however the
process ends). B-NAF models are small, so several jobs may share one GPU (Section 5.3 of the
paper trains many models in parallel); ``--slots-per-gpu`` caps how many, and further jobs wait
for a free slot.

Inside a SLURM job or ``salloc`` (``SLURM_JOB_ID`` set) the GPUs are the allocation's:
``CUDA_VISIBLE_DEVICES`` as SLURM set it, else ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``. With
one GPU (or none) the command runs unchanged; with several (a Snakemake group of seeds asking
for ``--gpus=3``) each job step takes a slot as above, so the steps spread over distinct GPUs
of the allocation instead of all landing on its first. Those slots live in a folder of their
own per job and node. On a machine without GPUs the command runs unchanged (on the CPU).

Outside SLURM, GPUs are counted from ``BNAF_GPUS`` (a count ``"4"`` or ids ``"0,2"``; tests fake
GPUs this way), else ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``, which lists GPUs in PCI
bus order and MIG instances by UUID (a MIG-enabled GPU is replaced by its instances, each a
device of its own). CUDA numbers GPUs fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so
the pinned command gets that setting (ids read from ``nvidia-smi`` always; ids from the
environment unless it already names an order). Lock file names keep only ``[A-Za-z0-9._-]`` of
an id (MIG ids may hold ``/``). Locks live in ``BNAF_GPU_LOCK_DIR`` (default
``$TMPDIR/bnaf-gpu-slots-<uid>``), shared by every checkout on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bnaf.core.errors import BnafError

__all__ = [
    "Plan",
    "Slot",
    "acquire",
    "add_arguments",
    "gpu_slot",
    "lock_dir",
    "lock_name",
    "nvidia_smi_gpus",
    "pinned_env",
    "plan",
    "run",
    "slurm_gpus",
    "visible_gpus",
]


@dataclass
class Slot:
    """A held slot: GPU ``device`` (an id as CUDA_VISIBLE_DEVICES names it), slot ``index``."""

    device: str
    index: int
    handle: IO[bytes]

    def release(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def _ids(value: str) -> list[str]:
    # An empty value or -1 hides every GPU on purpose.
    return [g.strip() for g in value.split(",") if g.strip() and g.strip() != "-1"]


def nvidia_smi_gpus(listing: str) -> list[str]:
    r"""Device ids from ``nvidia-smi -L`` output: each GPU's index (PCI bus order), or, for a
    GPU split into MIG instances, the instances' UUIDs (what ``CUDA_VISIBLE_DEVICES`` takes)."""
    gpus: list[tuple[str, list[str]]] = []
    for line in listing.splitlines():
        gpu = re.match(r"GPU (\d+):", line)
        mig = re.match(r"\s+MIG .*\(UUID: (MIG-[^)\s]+)\)", line)
        if gpu:
            gpus.append((gpu.group(1), []))
        elif mig and gpus:
            gpus[-1][1].append(mig.group(1))
    return [i for index, migs in gpus for i in (migs or [index])]


def _query_nvidia_smi() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return nvidia_smi_gpus(out.stdout) if out.returncode == 0 else []


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPU ids a local job may be pinned to (see the module docstring for the order)."""
    env = os.environ if env is None else env
    fake = env.get("BNAF_GPUS")
    if fake is not None:
        fake = fake.strip()
        if fake.isdigit():
            return [str(i) for i in range(int(fake))]
        return _ids(fake)
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return _ids(cvd)
    return _query_nvidia_smi()


def slurm_gpus(env: dict[str, str] | None = None) -> list[str]:
    r"""The GPUs a SLURM job (or ``salloc``) holds, as its commands address them."""
    env = os.environ if env is None else env
    for key in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if env.get(key) is not None:
            return _ids(env[key])
    return []


def lock_name(device: str, index: int) -> str:
    r"""The lock file of slot ``index`` of ``device``: safe for any id (``MIG-<uuid>``,
    ``MIG-GPU-<uuid>/<gi>/<ci>``, ``GPU-<uuid>``, an index)."""
    return f"gpu{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.slot{index}.lock"


def lock_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    default = Path(tempfile.gettempdir()) / f"bnaf-gpu-slots-{os.getuid()}"
    return Path(env.get("BNAF_GPU_LOCK_DIR") or default)


def _try_lock(path: Path) -> IO[bytes] | None:
    handle = open(path, "ab")  # noqa: SIM115 - the handle is the lock; it outlives this call
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _take_least_loaded(gpus: list[str], folder: Path, slots_per_gpu: int) -> Slot | None:
    r"""One pass under the folder's guard lock: count held slots per GPU, take the emptiest."""
    with open(folder / "guard.lock", "ab") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        best: tuple[int, str, int] | None = None  # (held, device, first free slot)
        for device in gpus:
            held, free = 0, None
            for j in range(slots_per_gpu):
                handle = _try_lock(folder / lock_name(device, j))
                if handle is None:
                    held += 1
                    continue
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
                if free is None:
                    free = j
            if free is not None and (best is None or held < best[0]):
                best = (held, device, free)
        if best is None:
            return None
        handle = _try_lock(folder / lock_name(best[1], best[2]))
        # Every taker holds the guard, so the slot found free above is still free.
        assert handle is not None
        return Slot(best[1], best[2], handle)


def acquire(
    gpus: list[str],
    slots_per_gpu: int = 64,
    folder: Path | None = None,
    timeout: float | None = None,
    poll: float = 0.2,
) -> Slot:
    """Block until a slot is free on some GPU in ``gpus``; spread jobs evenly over the GPUs."""
    if not gpus:
        raise BnafError("no GPU to take a slot on")
    if slots_per_gpu < 1:
        raise BnafError(f"--slots-per-gpu must be at least 1, got {slots_per_gpu}")
    folder = lock_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        slot = _take_least_loaded(gpus, folder, slots_per_gpu)
        if slot is not None:
            return slot
        if timeout is not None and time.monotonic() - start > timeout:
            raise BnafError(
                f"no free GPU slot after {timeout:.0f} s "
                f"({len(gpus)} GPU(s) x {slots_per_gpu} slot(s), locks in {folder})"
            )
        time.sleep(poll)


@dataclass
class Plan:
    r"""Where a job's slot comes from: ``gpus`` to spread over (empty: run unpinned, for
    ``reason``), the lock ``folder`` and whether ids are in PCI bus order for certain."""

    gpus: list[str]
    folder: Path
    pci_order: bool
    reason: str = ""


def plan(env: dict[str, str] | None = None) -> Plan:
    r"""Decide how a job is pinned (see the module docstring)."""
    env = os.environ if env is None else env
    folder = lock_dir(env)
    job = env.get("SLURM_JOB_ID")
    if job:
        gpus = slurm_gpus(env)
        if len(gpus) < 2:
            return Plan([], folder, False, f"SLURM job with {len(gpus)} GPU(s)")
        # Per job and node: another job's "0" may be another GPU (cgroups renumber devices).
        return Plan(gpus, folder / f"slurm-{job}-{socket.gethostname()}", False)
    from_smi = env.get("BNAF_GPUS") is None and env.get("CUDA_VISIBLE_DEVICES") is None
    gpus = visible_gpus(env)
    return Plan(gpus, folder, from_smi, "" if gpus else "no GPU")


def pinned_env(env: dict[str, str], device: str, pci_order: bool) -> dict[str, str]:
    r"""``env`` with ``CUDA_VISIBLE_DEVICES=device`` and the order its ids are meant in."""
    env = dict(env, CUDA_VISIBLE_DEVICES=device)
    if pci_order:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    else:
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


@contextlib.contextmanager
def gpu_slot(slots_per_gpu: int = 64, timeout: float | None = None) -> Iterator[str | None]:
    r"""For in-process use at the start of a training stage, before CUDA is initialised.

    Sets ``CUDA_VISIBLE_DEVICES`` (and ``CUDA_DEVICE_ORDER``) for the block and yields the
    device id, or yields ``None`` (and changes nothing) where :func:`plan` pins nothing.
    """
    how = plan()
    if not how.gpus:
        yield None
        return
    slot = acquire(how.gpus, slots_per_gpu, folder=how.folder, timeout=timeout)
    keys = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    old = {k: os.environ.get(k) for k in keys}
    new = pinned_env(dict(os.environ), slot.device, how.pci_order)
    for k in keys:
        os.environ[k] = new[k]
    try:
        yield slot.device
    finally:
        slot.release()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slots-per-gpu",
        type=int,
        default=int(os.environ.get("BNAF_SLOTS_PER_GPU", "64")),
        help="most jobs sharing one GPU; more wait (default: $BNAF_SLOTS_PER_GPU or 64)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for a slot (default: forever)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")


def _exec(command: list[str], env: dict[str, str], slot: Slot | None = None) -> None:
    r"""Become the command. A held slot's lock file stays open across ``exec`` (an inherited
    descriptor), so the training process itself holds the slot and the kernel frees it when
    that process ends, however it ends; signals from Snakemake or SLURM reach it directly."""
    if slot is not None:
        os.set_inheritable(slot.handle.fileno(), True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        raise BnafError(f"cannot run {command[0]!r}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BnafError("nothing to run: python -m bnaf gpu -- <command ...>")
    env = dict(os.environ)
    how = plan(env)
    if not how.gpus:
        print(f"[gpu] {how.reason}: running unpinned", file=sys.stderr, flush=True)
        _exec(command, env)
    slot = acquire(how.gpus, args.slots_per_gpu, folder=how.folder, timeout=args.timeout)
    env = pinned_env(env, slot.device, how.pci_order)
    where = f" of SLURM job {env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else ""
    print(
        f"[gpu] CUDA_VISIBLE_DEVICES={slot.device}{where} (slot {slot.index}, "
        f"CUDA_DEVICE_ORDER={env['CUDA_DEVICE_ORDER']})",
        file=sys.stderr,
    )
    _exec(command, env, slot)
    return 0  # not reached: exec replaced this process
