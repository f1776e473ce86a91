r"""``python -m bnaf gpu``: pin a local job to one GPU, ``python -m bnaf gpu -- <command ...>``.

Snakemake's ``resources: gpu=1`` with ``--resources gpu=K`` only limits how many GPU jobs run at
once; it does not say *which* device a local job should use. This wrapper does: it takes a slot
on the least-loaded visible GPU (an exclusive ``flock`` on a file ``gpu<id>.slot<j>.lock``), runs
the command with ``CUDA_VISIBLE_DEVICES=<id>`` (replacing itself by it, so no wrapper process
lingers), and the slot is freed when the command ends (the kernel drops the lock however the
process ends). B-NAF models are small, so several jobs may share one GPU (Section 5.3 of the
paper trains many models in parallel); ``--slots-per-gpu`` caps how many, and further jobs wait
for a free slot.

Inside a SLURM job (``SLURM_JOB_ID`` set) SLURM has already assigned the GPU: the command runs
unchanged. On a machine without GPUs it also runs unchanged (on the CPU).

GPUs are counted from ``BNAF_GPUS`` (a count ``"4"`` or ids ``"0,2"``; tests fake GPUs this way),
else ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``. Locks live in ``BNAF_GPU_LOCK_DIR``
(default ``$TMPDIR/bnaf-gpu-slots-<uid>``), shared by every checkout on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bnaf.core.errors import BnafError

__all__ = ["Slot", "visible_gpus", "lock_dir", "acquire", "gpu_slot", "add_arguments", "run"]


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


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPU ids a local job may be pinned to (see the module docstring for the order)."""
    env = os.environ if env is None else env
    fake = env.get("BNAF_GPUS")
    if fake is not None:
        fake = fake.strip()
        if fake.isdigit():
            return [str(i) for i in range(int(fake))]
        return [g.strip() for g in fake.split(",") if g.strip()]
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        # An empty value or -1 hides every GPU on purpose.
        return [g.strip() for g in cvd.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
    return [str(i) for i in range(len(lines))] if out.returncode == 0 else []


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
                handle = _try_lock(folder / f"gpu{device}.slot{j}.lock")
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
        handle = _try_lock(folder / f"gpu{best[1]}.slot{best[2]}.lock")
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


@contextlib.contextmanager
def gpu_slot(slots_per_gpu: int = 64, timeout: float | None = None) -> Iterator[str | None]:
    r"""For in-process use at the start of a training stage, before CUDA is initialised.

    Sets ``CUDA_VISIBLE_DEVICES`` for the block and yields the device id, or yields ``None``
    (and changes nothing) inside a SLURM job or without GPUs.
    """
    gpus = visible_gpus()
    if os.environ.get("SLURM_JOB_ID") or not gpus:
        yield None
        return
    slot = acquire(gpus, slots_per_gpu, timeout=timeout)
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
    try:
        yield slot.device
    finally:
        slot.release()
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


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
    gpus = visible_gpus(env)
    if env.get("SLURM_JOB_ID") or not gpus:
        where = "SLURM job" if env.get("SLURM_JOB_ID") else "no GPU"
        print(f"[gpu] {where}: running unpinned", file=sys.stderr, flush=True)
        _exec(command, env)
    slot = acquire(gpus, args.slots_per_gpu, timeout=args.timeout)
    env["CUDA_VISIBLE_DEVICES"] = slot.device
    print(f"[gpu] CUDA_VISIBLE_DEVICES={slot.device} (slot {slot.index})", file=sys.stderr)
    _exec(command, env, slot)
    return 0  # not reached: exec replaced this process
