r"""A small but complete fake of the MAF ``data.tar.gz`` for offline tests and CI.

:func:`write_fixture_archive` writes the five Table-1 datasets in their raw formats
(``power/data.npy``, ``gas/ethylene_CO.pickle`` as an old-pandas DataFrame pickle,
``hepmass/1000_{train,test}.csv`` with header and label column, ``miniboone/data.npy``,
``BSDS300/BSDS300.hdf5``) under the archive's top folder ``data/``, deterministically (fixed
seeds, tar and gzip timestamps zero), and returns the archive's md5 so a test can name it as
the checksum override of ``maf/data.tar.gz``::

    md5 = write_fixture_archive(tmp_path / "mirror" / "data.tar.gz")
    # params/data.yaml:  mirror: <tmp>/mirror   checksums: {maf/data.tar.gz: "md5:<md5>"}

The contents are shaped to exercise every step of the recipes: correlated GAS sensors that
the correlation loop must drop, HEPMASS features whose smallest value repeats (dropped) and
whose most frequent value is not the smallest (kept), a test CSV with one extra column.
"""

from __future__ import annotations

import copyreg
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from bnaf.core.io import atomic_path

__all__ = ["FIXTURE_ROWS", "write_fixture_archive", "write_fixture_files", "write_legacy_pickle"]

#: default sizes: small, but every tail split and the HEPMASS min-count rule stay meaningful
FIXTURE_ROWS = {"power": 1200, "gas": 900, "hepmass": 700, "miniboone": 400, "bsds300": 260}

# pandas 0.19 module paths (pandas/indexes/ moved to pandas/core/indexes/ in 0.20)
_PANDAS_PATHS = {
    "0.19": ("pandas.indexes.base", "pandas.indexes.numeric"),
    "0.20": ("pandas.core.indexes.base", "pandas.core.indexes.numeric"),
}


def _fake(module: str, name: str) -> type:
    """A class that pickles as the global ``module.name`` (an old pandas location)."""

    def reduce_ex(self: Any, protocol: int) -> tuple:
        return (copyreg.__newobj__, (type(self),), self.state)

    return type(name, (), {"_global": (module, name), "__reduce_ex__": reduce_ex})


class _OldPickler(pickle._Pickler):
    """Writes fake classes, and numpy's 2.x module names, as an old pandas/numpy would."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        where = getattr(obj, "_global", None) if isinstance(obj, type) else None
        if where is None and getattr(obj, "__module__", "").startswith("numpy._core"):
            where = (obj.__module__.replace("numpy._core", "numpy.core"), obj.__name__)
        if where is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{where[0]}\n{where[1]}\n".encode())
        self.memoize(obj)


def write_legacy_pickle(columns: list[str], values: np.ndarray, path: Path, version: str) -> None:
    r"""Pickle a float frame (plus an int64 ``Time`` column first) laid out as pandas 0.19/0.20.

    The layout is the one ``DataFrame.__getstate__`` and ``BlockManager.__getstate__`` wrote:
    ``{"_data": BlockManager, "_typ": "dataframe"}``, the manager's state being
    ``(axes, block_values, block_items, {"0.14.1": {"axes", "blocks": [values, mgr_locs]}})``,
    each Index as ``_new_Index(cls, {"data": ..., "name": None})``.
    """
    base, numeric = _PANDAS_PATHS[version]
    new_index = _fake(base, "_new_Index")
    index_cls, int_index = _fake(base, "Index"), _fake(numeric, "Int64Index")

    class Reduced:
        def __init__(self, func: Any, args: tuple) -> None:
            self.r = (func, args)

        def __reduce_ex__(self, protocol: int) -> tuple:
            return self.r

    n = values.shape[0]
    labels = Reduced(new_index, (index_cls, {"data": np.array(columns, object), "name": None}))
    rows = Reduced(new_index, (int_index, {"data": np.arange(n, dtype=np.int64), "name": None}))
    time = (np.arange(n, dtype=np.int64) * 10).reshape(1, n)
    floats = np.ascontiguousarray(values.T)
    blocks = [
        {"values": floats, "mgr_locs": np.arange(1, len(columns), dtype=np.int64)},
        {"values": time, "mgr_locs": slice(0, 1, 1)},
    ]
    items = [
        Reduced(new_index, (index_cls, {"data": np.array(columns[1:], object), "name": None})),
        Reduced(new_index, (index_cls, {"data": np.array(columns[:1], object), "name": None})),
    ]
    manager = _fake("pandas.core.internals", "BlockManager")()
    manager.state = (
        [labels, rows],
        [b["values"] for b in blocks],
        items,
        {"0.14.1": {"axes": [labels, rows], "blocks": blocks}},
    )
    frame = _fake("pandas.core.frame", "DataFrame")()
    frame.state = {"_data": manager, "_typ": "dataframe", "_metadata": []}
    buf = io.BytesIO()
    _OldPickler(buf, protocol=2).dump(frame)
    path.write_bytes(buf.getvalue())


def _csv(path: Path, header: list[str], rows: np.ndarray) -> None:
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def write_fixture_files(root: Path, rows: dict[str, int] | None = None, seed: int = 0) -> None:
    """Write the extracted fake files under ``root`` (``root/power/data.npy``, ...)."""
    import h5py

    n = {**FIXTURE_ROWS, **(rows or {})}
    rng = np.random.default_rng(seed)
    (root / "power").mkdir(parents=True, exist_ok=True)
    # active, reactive power, voltage, intensity, sub-metering x3, time of day (minutes)
    scale = np.array([1.0, 0.1, 5.0, 4.0, 1.0, 1.0, 8.0, 400.0])
    shift = np.array([1.0, 0.1, 240.0, 4.0, 0.0, 1.0, 6.0, 720.0])
    power = np.round(rng.normal(size=(n["power"], 8)) * scale + shift, 3)
    np.save(root / "power" / "data.npy", power)

    (root / "gas").mkdir(exist_ok=True)
    base = rng.normal(size=(n["gas"], 12))
    twins = base[:, [2, 5, 5, 9]] + 1e-3 * rng.normal(size=(n["gas"], 4))  # corr > 0.98
    sensors = np.hstack((base[:, :6], twins[:, :2], base[:, 6:], twins[:, 2:]))
    meth_eth = rng.uniform(0, 1, size=(n["gas"], 2))
    columns = ["Time", "Meth", "Eth"] + [f"Sensor{i}" for i in range(16)]
    gas = np.hstack((meth_eth, sensors))
    write_legacy_pickle(columns, gas, root / "gas" / "ethylene_CO.pickle", "0.19")

    (root / "hepmass").mkdir(exist_ok=True)
    header = ["# label"] + [f"f{i}" for i in range(27)]
    for split, size in (("train", n["hepmass"]), ("test", n["hepmass"] // 2)):
        x = np.round(rng.normal(size=(size, 27)), 6)
        label = (rng.uniform(size=(size, 1)) < 0.6).astype(float)
        pos = np.flatnonzero(label[:, 0] == 1)
        x[:, 3] = rng.integers(0, 3, size)  # smallest value frequent: dropped
        x[pos[:5], 7] = x[:, 7].min() - 1.0  # smallest value 5 times among label 1: kept
        x[pos[:6], 8] = x[:, 8].min() - 1.0  # smallest value 6 times: dropped
        x[:, 11] = np.where(rng.uniform(size=size) < 0.5, 2.0, x[:, 11])  # mode is not min: kept
        extra = [] if split == "train" else ["mass"]
        data = np.hstack((label, x) + ((np.full((size, 1), 1000.0),) if extra else ()))
        _csv(root / "hepmass" / f"1000_{split}.csv", header + extra, data)

    (root / "miniboone").mkdir(exist_ok=True)
    np.save(root / "miniboone" / "data.npy", rng.normal(size=(n["miniboone"], 43)) * 3 + 1)

    (root / "BSDS300").mkdir(exist_ok=True)
    m = n["bsds300"]
    with h5py.File(root / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for split, size in (("train", m), ("validation", m // 5), ("test", m // 2)):
            x = (rng.normal(size=(size, 63)) * 0.1).astype(np.float32)
            f.create_dataset(split, data=x, track_times=False)


def write_fixture_archive(
    path: str | Path, rows: dict[str, int] | None = None, seed: int = 0, top: str = "data/"
) -> str:
    """Write a fake MAF ``data.tar.gz`` at ``path``; returns its md5 hex digest."""
    import tempfile

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fixture_files(root, rows, seed)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                info = tar.gettarinfo(file, arcname=top + file.relative_to(root).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.pax_headers = {}
                with open(file, "rb") as f:
                    tar.addfile(info, f)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    with atomic_path(path) as tmp_file:
        tmp_file.write_bytes(packed.getvalue())
    return hashlib.md5(packed.getvalue()).hexdigest()
