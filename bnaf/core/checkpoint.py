r"""One checkpoint discipline for every training stage (toy, UCI, VAE).

A run folder holds at most one ``checkpoint.pt``: the state to continue from and the
*fingerprint* of everything that shapes the run's result (the params that matter, the data's
digest, the seed and config, the device and numerics, and the source of every bnaf module on
the training path). On the next start:

- the same fingerprint: the run continues where it stopped;
- another fingerprint (a param, the data, the seed or the code changed): the old checkpoint is
  kept beside it as ``checkpoint.<its fingerprint>.stale.pt`` and the run starts afresh;
- an unreadable checkpoint (truncated, not a torch file, holding code): it is set aside as
  ``checkpoint.pt.corrupt`` and the run starts afresh;
- temporary files left by a kill inside a write are removed.

Each case says so in one log line. Checkpoints are read with ``weights_only=True`` onto the CPU
(no code can run; RNG states stay CPU tensors; ``load_state_dict`` places the rest), so every
state in them is made of tensors and plain Python values (:func:`rng_state`). A finished run
removes its checkpoint unless asked to keep it. :func:`run_lock` keeps two jobs out of one folder.
"""

from __future__ import annotations

import ast
import copy
import fcntl
import hashlib
import importlib.util
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_torch_save, ensure_free

__all__ = [
    "Checkpoint",
    "code_closure",
    "cpu_copy",
    "fingerprint",
    "rng_state",
    "run_lock",
    "set_rng_state",
    "tensor_digest",
]

NAME = "checkpoint.pt"


# ------------------------------------------------------------------ what shapes a result
def code_closure(*modules: str) -> list[Path]:
    r"""Source files of ``modules`` and of every bnaf module they import, directly or not
    (static: every ``import bnaf...`` in their source, function-level ones included), with the
    ``__init__.py`` of each package on the way."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            try:
                spec = importlib.util.find_spec(".".join(parts[:i]))
            except (ImportError, AttributeError, ValueError):  # a name, not a module
                spec = None
            if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                continue
            path = Path(spec.origin)
            if path in seen:
                continue
            seen.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    todo += [a.name for a in node.names if a.name.startswith("bnaf")]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bnaf"):
                    todo.append(node.module)  # type: ignore[arg-type]
                    todo += [f"{node.module}.{a.name}" for a in node.names]
    return sorted(seen)


def tensor_digest(*tensors: torch.Tensor) -> str:
    r"""SHA-256 of the values (and shapes) of ``tensors``: the data a run trains on."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fingerprint(settings: Any, data: str, modules: Iterable[str]) -> str:
    r"""The digest a checkpoint must match to be resumed: ``settings`` (JSON-able: the params
    that change the trajectory, seed, config, device), the ``data`` digest, and the source of
    ``modules`` and everything they import (:func:`code_closure`)."""
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(data.encode())
    for path in code_closure(*modules):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cpu_copy(obj: Any) -> Any:
    r"""A deep copy of ``obj`` with every tensor on the CPU: weights kept for later (the best
    state, snapshots, Polyak reloads) cost host memory, not device memory, and load anywhere
    (``load_state_dict`` places them)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


# ------------------------------------------------------------------------- RNG states
def rng_state(*generators: torch.Generator) -> dict[str, Any]:
    r"""Every random stream a stage draws from, as tensors and plain values: torch's CPU
    stream, numpy's and Python's global streams, the current CUDA device's stream (saved as
    the CPU byte tensor CUDA hands out) and the given generators."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
        "generators": [g.get_state() for g in generators],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device only: robust to pinning
    return state


def set_rng_state(state: dict[str, Any], *generators: torch.Generator) -> None:
    r"""Restore what :func:`rng_state` saved (generators in the same order)."""
    torch.set_rng_state(state["torch"].cpu())
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if len(generators) != len(state["generators"]):
        raise BnafError("checkpoint: the number of saved random generators does not match")
    for g, s in zip(generators, state["generators"]):
        g.set_state(s.cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# ------------------------------------------------------------------------ the checkpoint
class Checkpoint:
    r"""The checkpoint of one run folder, bound to its fingerprint.

    Arguments:
        folder: the run folder.
        key: the run's :func:`fingerprint`.
        log: prints one line (what happened to an old checkpoint).
    """

    def __init__(self, folder: str | Path, key: str, log: Callable[[str], Any] = print):
        self.folder, self.key, self.log = Path(folder), key, log
        self.path = self.folder / NAME

    def load(self) -> dict[str, Any] | None:
        r"""The saved ``{"state", **meta}`` if it belongs to this run, else ``None`` (after
        setting the file aside as the module docstring says)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.folder.glob(f".{NAME}.*.tmp*"):  # a kill inside a write left it
            tmp.unlink(missing_ok=True)
            self.log(f"removed {tmp.name}, left by an interrupted checkpoint write")
        if not self.path.is_file():
            return None
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or "state" not in blob or "fingerprint" not in blob:
                raise ValueError("not a checkpoint of this pipeline")
        except Exception as exc:  # unreadable: never jam the run, never delete evidence
            aside = self.path.with_name(NAME + ".corrupt")
            os.replace(self.path, aside)
            self.log(f"{self.path} is unreadable ({type(exc).__name__}); kept as {aside.name}, "
                     "starting afresh")  # fmt: skip
            return None
        if blob["fingerprint"] != self.key:
            aside = self.path.with_name(f"checkpoint.{str(blob['fingerprint'])[:12]}.stale.pt")
            os.replace(self.path, aside)
            self.log(f"{self.path} was written for other params, data, seed or code; kept as "
                     f"{aside.name}, starting afresh")  # fmt: skip
            return None
        return blob

    def save(self, state: dict[str, Any], **meta: Any) -> None:
        r"""Write ``state`` (tensors and plain values only) atomically with the fingerprint."""
        atomic_torch_save({"fingerprint": self.key, "state": state, **meta}, self.path)

    def reserve(self, model: torch.nn.Module, copies: int = 8) -> None:
        r"""Refuse to start when the folder's disk cannot hold what the run will write: about
        ``copies`` copies of the weights (the model file, and a checkpoint with the optimiser's
        moments, the averaged and the best weights) and a MiB for metrics and logs. Better one
        line now than a full disk after hours of training."""
        weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        ensure_free(self.folder, copies * weights + 2**20, "the run (model, checkpoint, metrics)")

    def finish(self, keep: bool = False) -> None:
        r"""The run is complete: remove the checkpoint unless ``keep``."""
        if not keep:
            self.path.unlink(missing_ok=True)


@contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    r"""Hold ``folder/.lock`` while a job writes the run: a second job on the same folder fails
    at once, naming the folder, instead of interleaving its writes (released however the job
    ends: the operating system drops the lock with the process)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise BnafError(f"{folder}: cannot write the run folder ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BnafError(f"{folder}: another job is writing this run") from None
        yield
    finally:
        handle.close()
