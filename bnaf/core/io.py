r"""Atomic writes (conventions, item 7): a file either exists complete or not at all.

Everything is written to a temporary name in the destination folder and renamed into place,
so an interrupted job never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bnaf.core.errors import BnafError
from bnaf.core.shapes import check

__all__ = [
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_free",
    "load_module",
    "read_json",
    "read_text",
    "save_module",
]

T = TypeVar("T")


def ensure_free(folder: str | Path, need: int, what: str) -> None:
    """Refuse, in one line naming ``folder``, when its disk has fewer than ``need`` bytes free
    for ``what``: writers whose libraries fail badly on a full disk (HDF5, torch's zip writer)
    check first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < need:
        raise BnafError(
            f"{folder}: {free / 2**20:.1f} MiB free on its disk, {what} needs about "
            f"{need / 2**20:.1f} MiB; free some space first"
        )


def _disk_full(exc: BaseException) -> bool:
    """An error of a library that wraps ENOSPC in its own exception (HDF5, torch's writer)."""
    text = str(exc)
    return "errno = 28" in text or "No space left" in text or "failed writing file" in text


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.
    A write that fails for the disk's sake (full, read-only) is one :class:`BnafError`
    naming ``path``; the temporary file is removed and ``path`` keeps what it held."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent
        )
    except OSError as exc:
        raise BnafError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    # mkstemp creates 0600 files; give the result the mode a plain open() would (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise BnafError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except RuntimeError as exc:
        if not _disk_full(exc):
            raise
        raise BnafError(f"{path}: cannot write (no space left on device)") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite(obj: Any, where: str = "") -> Any:
    """Refuse NaN/inf: a results file never holds them as numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite value {obj} at {where or '<root>'} in a JSON result")
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def atomic_write_json(path: str | Path, obj: Any, allow_nonfinite: bool = False) -> None:
    """Write JSON atomically; NaN and inf are rejected unless ``allow_nonfinite``."""
    if not allow_nonfinite:
        obj = _finite(obj)
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=allow_nonfinite) + "\n"
    )


def atomic_torch_save(obj: Any, path: str | Path, save: Callable[..., None] | None = None) -> None:
    import torch

    with atomic_path(path) as tmp:
        (save or torch.save)(obj, tmp)


def save_module(module: Any, path: str | Path, **extra: object) -> None:
    r"""Save a module that describes itself (its ``config``: the constructor's keyword
    arguments) atomically as ``{"config", "state_dict", **extra}``. The tensors are saved as
    copies: a view (a packed run's parameters) would otherwise carry its whole storage."""
    state = {k: v.clone() for k, v in module.state_dict().items()}
    atomic_torch_save({"config": module.config, "state_dict": state, **extra}, path)


def load_module(cls: type[T], path: str | Path) -> tuple[T, dict[str, Any]]:
    r"""Rebuild a module saved by :func:`save_module` as ``cls(**config)`` on the CPU, with the
    ``extra`` it was saved with. Read with ``weights_only=True`` (no code can run); any
    failure is one :class:`~bnaf.core.errors.BnafError` naming the file."""
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BnafError(f"{path}: no such model file") from None
    except Exception as exc:  # truncated, not a torch file, or holding code
        raise BnafError(f"{path}: not a readable model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or not {"config", "state_dict"} <= set(blob):
        raise BnafError(f"{path}: not a saved {cls.__name__} (expected 'config' and 'state_dict')")
    try:
        module = cls(**blob["config"])
        module.load_state_dict(blob["state_dict"])  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BnafError(f"{path}: {cls.__name__} does not fit its saved config ({exc})") from None
    return module, {k: v for k, v in blob.items() if k not in ("config", "state_dict")}


def read_text(path: str | Path) -> str:
    r"""The text of a file; a missing or unreadable one is one
    :class:`~bnaf.core.errors.BnafError` naming it."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise BnafError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BnafError(f"{path}: cannot read it ({exc})") from None


def read_json(path: str | Path, shape: Any = None) -> Any:
    r"""Read a JSON file; a missing, unreadable or malformed file (or one not of ``shape``:
    :mod:`bnaf.core.shapes`) is one :class:`~bnaf.core.errors.BnafError` naming the file."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BnafError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if shape is not None:
        check(data, shape, str(path))
    return data
