r"""Read a pandas DataFrame pickled by an old pandas (GAS's ``ethylene_CO.pickle``, 2017).

``pandas.read_pickle`` only promises to read pickles from pandas >= 1.0; the MAF archive's GAS
file predates that, and an unrestricted unpickler would run any code a crafted file names.
:func:`read_dataframe_pickle` therefore reads every pickle with a restricted unpickler that
never imports pandas classes: every ``pandas.*`` global becomes an inert stand-in that records
its arguments and state. The frame is then rebuilt from what a DataFrame's pickle has always
held (pandas 0.14.1 onwards; pandas 2's reduced form too): its block manager's axes (column
labels, row index) and blocks (a 2-D array per dtype plus the column positions it fills). Only
numpy and a few builtins are allowed as real globals, so the file cannot run code.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bnaf.core.errors import BnafError

__all__ = ["read_dataframe_pickle", "read_legacy_dataframe"]

# Real objects an old pickle may need; numpy 1.x wrote "numpy.core", numpy 2 "numpy._core".
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # how protocol 2 writes bytes from Python 3
    ("builtins", "object"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("collections", "OrderedDict"),
}


class _Stub:
    """An inert stand-in for a pandas class or function found in the pickle."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self._qualname} stand-in>"


class _Unpickler(pickle.Unpickler):
    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__, copy_reg), as pickle's fix_imports would map them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "pandas" or module.startswith("pandas."):
            key = (module, name)
            if key not in self._stubs:
                self._stubs[key] = type(name, (_Stub,), {"_qualname": f"{module}.{name}"})
            return self._stubs[key]
        if (module, name) in _ALLOWED:
            module = module.replace("numpy.core.", "numpy._core.")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def _qual(obj: Any) -> str:
    return getattr(type(obj), "_qualname", type(obj).__name__)


def _index_values(ix: Any) -> np.ndarray:
    """The labels of a pickled Index (``_new_Index(cls, d)`` since pandas 0.15)."""
    if isinstance(ix, np.ndarray):
        return ix
    if isinstance(ix, _Stub) and ix.args and isinstance(ix.args[-1], dict):
        d = ix.args[-1]
        if "data" in d:
            data = d["data"]
            if isinstance(data, _Stub) and isinstance(data.state, tuple):  # an extension array
                data = next((x for x in data.state if isinstance(x, np.ndarray)), data)
            return np.asarray(data)
        if {"start", "stop"} <= set(d):  # RangeIndex
            return np.arange(d["start"], d["stop"], d.get("step", 1))
    if isinstance(ix, _Stub) and isinstance(
        ix.state, tuple
    ):  # pandas < 0.15: (ndarray state, own)
        for part in ix.state:
            if isinstance(part, np.ndarray):
                return part
    raise BnafError(f"unrecognised index object {ix!r} in the pickle")


def _locs(locs: Any, n: int) -> np.ndarray:
    if isinstance(locs, slice):
        return np.arange(n)[locs]
    return np.asarray(locs, dtype=np.intp).ravel()


def read_legacy_dataframe(path: str | Path) -> Any:
    """Rebuild the DataFrame in ``path`` without importing any pandas class from the pickle."""
    import pandas as pd

    with open(path, "rb") as f:
        # latin1 keeps Python 2 byte strings (numpy buffers among them) byte for byte.
        top = _Unpickler(f, encoding="latin1").load()
    if not (isinstance(top, _Stub) and isinstance(top.state, dict)):
        raise BnafError(f"{path}: not a pickled pandas DataFrame (found {_qual(top)})")
    mgr = top.state.get("_data", top.state.get("_mgr"))
    if isinstance(mgr, _Stub) and mgr.state is None and len(mgr.args) == 2:
        # pandas >= 2: BlockManager(blocks, axes), each block _unpickle_block(values, locs, ndim)
        blocks_, axes = mgr.args
        columns = _index_values(axes[0])
        blocks = [(b.args[0], b.args[1]) for b in blocks_ if isinstance(b, _Stub) and b.args]
        return _frame(path, pd, columns, len(_index_values(axes[1])), blocks)
    if not isinstance(mgr, _Stub) or not isinstance(mgr.state, tuple) or len(mgr.state) < 3:
        raise BnafError(f"{path}: the pickled frame has no block manager state")
    st = mgr.state
    if len(st) >= 4 and isinstance(st[3], dict) and "0.14.1" in st[3]:
        axes = st[3]["0.14.1"]["axes"]
        blocks = [(b["values"], b["mgr_locs"]) for b in st[3]["0.14.1"]["blocks"]]
        columns = _index_values(axes[0])
    else:  # pandas < 0.14.1: blocks name their columns instead of giving positions
        axes, values, items = st[0], st[1], st[2]
        columns = _index_values(axes[0])
        where = {c: i for i, c in enumerate(columns.tolist())}
        blocks = [
            (v, [where[c] for c in _index_values(it).tolist()]) for v, it in zip(values, items)
        ]
    return _frame(path, pd, columns, len(_index_values(axes[1])), blocks)


def _frame(path: Any, pd: Any, columns: np.ndarray, n_rows: int, blocks: list) -> Any:
    """A DataFrame from blocks of ``(values, column positions)``."""
    cols: dict[int, np.ndarray] = {}
    for values, locs in blocks:
        values = np.asarray(values)
        values = values.reshape(-1, n_rows) if values.ndim == 1 else values
        for row, pos in zip(values, _locs(locs, len(columns))):
            cols[int(pos)] = row
    if sorted(cols) != list(range(len(columns))):
        raise BnafError(f"{path}: the pickled blocks do not cover the frame's columns")
    frame = pd.DataFrame({i: cols[i] for i in range(len(columns))})
    frame.columns = pd.Index(columns.tolist())
    return frame


def read_dataframe_pickle(path: str | Path) -> Any:
    r"""Read a pickled DataFrame written by any pandas since 0.14.1.

    Returns:
        ``pandas.DataFrame`` with the original column labels and values (the row index is
        replaced by a RangeIndex; the MAF recipes never use it).
    """
    import pandas as pd

    path = Path(path)
    try:  # never pandas.read_pickle: an unrestricted unpickler runs whatever the file says
        return read_legacy_dataframe(path)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise BnafError(
            f"{path}: cannot read this pickled DataFrame with pandas {pd.__version__} nor as an "
            f"old-pandas pickle ({type(exc).__name__}: {exc})"
        ) from exc
