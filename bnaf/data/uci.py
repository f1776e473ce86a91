r"""The five density-estimation datasets of Table 1, prepared exactly as MAF prepared them.

Papamakarios et al. (2017, MAF) published one archive (Zenodo record 1161203, ``data.tar.gz``)
and the code that turns its files into train/validation/test splits (github gpapamak/maf,
``datasets/*.py``; B-NAF's ``data/*.py`` are copies). B-NAF's Table 1 uses those splits, so
each ``prepare_*`` below performs the same operations in the same order: the same random
generator and draw order (POWER), the same column drops, the same statistics (numpy's
``std`` has ddof 0, pandas' ddof 1) and the same tail splits. Arithmetic is float64 and the
splits are stored as float32, as MAF's ``Data`` classes cast them (BSDS300 is kept in the
dtype of its HDF5 file, as MAF uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np

from bnaf.data.fetch import DatasetSpec, RemoteFile
from bnaf.data.legacy_pickle import read_dataframe_pickle
from bnaf.data.registry import register
from bnaf.data.store import Chunked, Prepared
from bnaf.core.errors import BnafError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAF_ARCHIVE",
    "MAF_URLS",
    "MAF_MD5",
    "tail_split",
    "prepare_power",
    "prepare_gas",
    "prepare_hepmass",
    "prepare_miniboone",
    "prepare_bsds300",
]

MAF_URLS = (
    "https://zenodo.org/records/1161203/files/data.tar.gz?download=1",
    "https://zenodo.org/record/1161203/files/data.tar.gz",
)
MAF_MD5 = "md5:9b9c9b0375315ad270eba4ce80c093ab"
#: local name under raw_dir (and under a mirror; its basename data.tar.gz is also tried)
MAF_ARCHIVE = "maf/data.tar.gz"
_SOURCE = "Papamakarios et al. 2017 (MAF), Zenodo record 1161203, data.tar.gz"
_STORED = np.float32  # MAF's Data classes: self.x = data.astype(np.float32)


def tail_split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split: test = last int(0.1 N) rows, validation = last int(0.1 N') of the rest."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[0:-n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[0:-n_val], rest[-n_val:], test


def _standardise_np(trn: np.ndarray, val: np.ndarray, tst: np.ndarray) -> Prepared:
    """Train+validation statistics, numpy's ddof 0 (POWER, MINIBOONE)."""
    both = np.vstack((trn, val))
    mu, s = both.mean(axis=0), both.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant column: refused below
        scaled = (trn - mu) / s, (val - mu) / s, (tst - mu) / s
    return _splits(*scaled)


def _splits(trn: np.ndarray, val: np.ndarray, tst: np.ndarray) -> Prepared:
    out = {"train": trn, "validation": val, "test": tst}
    for k, v in out.items():
        if not np.all(np.isfinite(v)):
            raise BnafError(f"split '{k}' has non-finite values after preparation")
    return Prepared({k: v.astype(_STORED) for k, v in out.items()}, {"stored_dtype": "float32"})


def _need(path: Path) -> Path:
    if not path.is_file():
        raise BnafError(f"raw file not found: {path} (run the 'data download' stage first)")
    return path


def _load_npy(path: Path) -> np.ndarray:
    r"""A raw ``.npy`` file (never with pickles), or one error line naming it."""
    try:
        return np.load(_need(path), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BnafError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None


def _read_csv(path: Path) -> Any:
    r"""A raw CSV file, or one error line naming it."""
    import pandas as pd

    try:
        return pd.read_csv(_need(path), index_col=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BnafError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None


def prepare_power(raw_dir: Path) -> Prepared:
    """POWER: shuffle (seed 42), drop columns 3 then 1, add MAF's dequantisation noise."""
    data = _load_npy(raw_dir / "power" / "data.npy")
    if data.ndim != 2 or data.shape[1] != 8:  # 7 measurements and the time of day
        raise BnafError(f"power/data.npy: expected (N, 8), got {data.shape}")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    # The draw order is MAF's (voltage, then active power, then sub-meterings); the columns
    # they land on are [active power, voltage, sub-metering x3, time].
    voltage = 0.01 * rng.rand(n, 1)
    active_power = 0.001 * rng.rand(n, 1)
    sub_metering = rng.rand(n, 3)
    data = data + np.hstack((active_power, voltage, sub_metering, np.zeros((n, 1))))
    return _standardise_np(*tail_split(data))


def _correlated_counts(frame: pd.DataFrame) -> np.ndarray:
    # Per column: how many columns (itself included) it correlates with above 0.98.
    return (frame.corr() > 0.98).to_numpy().sum(axis=1)


def prepare_gas(raw_dir: Path) -> Prepared:
    """GAS: drop Meth, Eth, Time and, one by one, the first column with a >0.98 correlate."""
    frame = read_dataframe_pickle(_need(raw_dir / "gas" / "ethylene_CO.pickle"))
    missing = [c for c in ("Meth", "Eth", "Time") if c not in frame.columns]
    if missing:
        raise BnafError(f"gas/ethylene_CO.pickle: no column(s) {missing}")
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    counts = _correlated_counts(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = _correlated_counts(frame)
    frame = (frame - frame.mean()) / frame.std()  # pandas: full data, ddof 1
    prepared = _splits(*tail_split(frame.to_numpy(dtype=np.float64)))
    prepared.attrs["columns"] = [str(c) for c in frame.columns]
    return prepared


def prepare_hepmass(raw_dir: Path) -> Prepared:
    """HEPMASS: label-1 rows, train statistics, drop features whose minimum repeats > 5 times."""
    import pandas as pd

    folder = raw_dir / "hepmass"
    trn = _read_csv(folder / "1000_train.csv")
    tst = _read_csv(folder / "1000_test.csv")
    # a label column and features; the test file also ends in the mass column MAF drops
    for name, frame, least in (("1000_train.csv", trn, 2), ("1000_test.csv", tst, 3)):
        if frame.shape[1] < least:
            raise BnafError(f"{folder / name}: {frame.shape[1]} column(s), expected {least}+")
    trn = trn[trn[trn.columns[0]] == 1].drop(columns=trn.columns[0])
    tst = tst[tst[tst.columns[0]] == 1].drop(columns=tst.columns[0])
    for name, frame in (("1000_train.csv", trn), ("1000_test.csv", tst)):
        if frame.shape[0] < 10:  # MAF keeps the signal (label 1) rows; the validation is 10%
            raise BnafError(f"{folder / name}: {frame.shape[0]} rows labelled 1, expected 10+")
    tst = tst.drop(columns=tst.columns[-1])  # the test file has one column too many (MAF)
    if list(tst.columns) != list(trn.columns):
        # MAF's pandas arithmetic aligns by label: a mismatch would silently give NaN columns.
        only_train = [str(c) for c in trn.columns if c not in tst.columns]
        only_test = [str(c) for c in tst.columns if c not in trn.columns]
        how = (
            f"only in train: {only_train}; only in test: {only_test}"
            if only_train or only_test
            else "the same columns in another order"
        )
        raise BnafError(
            f"hepmass: after MAF's column drops the test file's columns differ from the train "
            f"file's ({how})"
        )
    mu, s = trn.mean(), trn.std()  # pandas: ddof 1, train statistics for both files
    x_trn = ((trn - mu) / s).to_numpy(dtype=np.float64)
    x_tst = ((tst - mu) / s).to_numpy(dtype=np.float64)
    # MAF keeps a feature unless the count of its SMALLEST value exceeds 5 (Counter, sorted).
    keep = [j for j in range(x_trn.shape[1]) if np.sum(x_trn[:, j] == x_trn[:, j].min()) <= 5]
    x_trn, x_tst = x_trn[:, keep], x_tst[:, keep]
    n_val = int(x_trn.shape[0] * 0.1)
    prepared = _splits(x_trn[0:-n_val], x_trn[-n_val:], x_tst)
    prepared.attrs["columns"] = [str(trn.columns[j]) for j in keep]
    return prepared


def prepare_miniboone(raw_dir: Path) -> Prepared:
    """MINIBOONE: the archive's cleaned array, tail split, train+validation statistics."""
    data = _load_npy(raw_dir / "miniboone" / "data.npy")
    if data.ndim != 2:
        raise BnafError(f"miniboone/data.npy: expected a 2-D array, got {data.shape}")
    return _standardise_np(*tail_split(data))


def prepare_bsds300(raw_dir: Path, block_rows: int = 100_000) -> Prepared:
    """BSDS300: the HDF5 file's splits as they are, copied block by block (1.3M x 63)."""
    import h5py

    path = _need(raw_dir / "BSDS300" / "BSDS300.hdf5")
    try:
        with h5py.File(path, "r") as f:
            missing = [s for s in ("train", "validation", "test") if s not in f]
            if missing:
                raise BnafError(f"{path}: no dataset(s) {missing}; has {list(f)}")
            meta = {s: (tuple(f[s].shape), f[s].dtype) for s in ("train", "validation", "test")}
    except OSError as exc:
        raise BnafError(f"{path}: not a readable HDF5 file ({exc})") from None
    # One table in three splits: refuse splits that cannot be one dataset before copying 1.3M rows.
    shapes = {s: shape for s, (shape, _) in meta.items()}
    if any(len(shape) != 2 or 0 in shape for shape in shapes.values()):
        raise BnafError(f"{path}: splits must be non-empty 2-D arrays, got {shapes}")
    if len({shape[1] for shape in shapes.values()}) != 1:
        raise BnafError(f"{path}: splits of different widths {shapes}")
    if len({dtype for _, dtype in meta.values()}) != 1:
        raise BnafError(f"{path}: splits of different dtypes {[str(d) for _, d in meta.values()]}")

    def blocks(split: str) -> Iterator[np.ndarray]:
        with h5py.File(path, "r") as f:
            d = f[split]
            for start in range(0, d.shape[0], block_rows):
                block = d[start : start + block_rows]
                if not np.all(np.isfinite(block)):
                    raise BnafError(f"{path}:{split} has non-finite values")
                yield block

    splits = {
        s: Chunked(shape, dtype, lambda s=s: blocks(s)) for s, (shape, dtype) in meta.items()
    }
    return Prepared(splits, {"stored_dtype": str(meta["train"][1])})


def _maf(
    name: str, members: tuple[str, ...], prepare: Callable[[Path], Prepared], version: str = "1"
) -> DatasetSpec:
    archive = RemoteFile(MAF_ARCHIVE, MAF_URLS, MAF_MD5, members=members)
    spec = DatasetSpec(name, (archive,), prepare, "uci", _SOURCE, f"maf-{name}-{version}")
    return register(spec)


POWER = _maf("power", ("power/data.npy",), prepare_power)
GAS = _maf("gas", ("gas/ethylene_CO.pickle",), prepare_gas)
HEPMASS = _maf("hepmass", ("hepmass/1000_train.csv", "hepmass/1000_test.csv"), prepare_hepmass)
MINIBOONE = _maf("miniboone", ("miniboone/data.npy",), prepare_miniboone)
BSDS300 = _maf("bsds300", ("BSDS300/BSDS300.hdf5",), prepare_bsds300)
