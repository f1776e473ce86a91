r"""Prepared datasets as HDF5: one file per dataset, its splits and where they came from.

A prepare function returns :class:`Prepared`: split name -> array, or :class:`Chunked` for
splits too large to hold twice in memory (BSDS300), plus attributes. :func:`write_prepared`
writes it atomically and deterministically (no HDF5 timestamps, attributes in sorted order,
no compression), so preparing twice gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_path, ensure_free

__all__ = ["Chunked", "Prepared", "write_prepared", "read_prepared", "read_attrs"]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Chunked:
    """A split written block by block: ``blocks()`` yields row blocks adding up to ``shape``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[], Iterable[np.ndarray]]


@dataclass
class Prepared:
    """What a prepare function returns: the splits and their metadata."""

    splits: dict[str, np.ndarray | Chunked]
    attrs: dict[str, Any] = field(default_factory=dict)


def _attr(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        import json

        return json.dumps(value, sort_keys=True)
    return value


def write_prepared(path: str | Path, prepared: Prepared, attrs: Mapping[str, Any]) -> None:
    """Write ``prepared`` (and extra ``attrs``) to ``path`` atomically and reproducibly."""
    import h5py

    all_attrs = {**prepared.attrs, **attrs}
    all_attrs["splits"] = list(prepared.splits)
    all_attrs["shapes"] = {
        k: list(v.shape) for k, v in prepared.splits.items()
    }  # JSON so one attribute holds all
    # HDF5 fails badly on a full disk (error storms, even a crash): check first
    need = sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in prepared.splits.values()
    )
    ensure_free(Path(path).parent, need + 2**20, f"the prepared file {Path(path).name}")
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            for name, split in prepared.splits.items():
                if isinstance(split, Chunked):
                    d = f.create_dataset(
                        name, shape=split.shape, dtype=split.dtype, track_times=False
                    )
                    row = 0
                    for block in split.blocks():
                        d[row : row + len(block)] = block
                        row += len(block)
                    if row != split.shape[0]:
                        raise BnafError(f"{name}: wrote {row} rows, expected {split.shape[0]}")
                else:
                    f.create_dataset(name, data=np.ascontiguousarray(split), track_times=False)
            for key in sorted(all_attrs):
                f.attrs[key] = _attr(all_attrs[key])


def read_prepared(path: str | Path, splits: Iterable[str] = SPLITS) -> dict[str, np.ndarray]:
    """Load the named splits of a prepared file into memory."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BnafError(f"prepared dataset not found: {path} (run the 'prepare' stage)")
    with h5py.File(path, "r") as f:
        missing = [s for s in splits if s not in f]
        if missing:
            raise BnafError(f"{path}: no split(s) {', '.join(missing)}; has {', '.join(f)}")
        return {s: f[s][()] for s in splits}


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of a prepared file (JSON-valued ones decoded)."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        out = {}
        for k, v in f.attrs.items():
            v = v.decode() if isinstance(v, bytes) else v
            if isinstance(v, str) and v[:1] in "[{":
                v = json.loads(v)
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out
