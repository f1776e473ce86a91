"""The MAF preparation of the Table-1 datasets, checked against a literal restatement of
MAF's datasets/*.py (written out below, independently of bnaf.data.uci) on fixture files in
the exact raw formats, plus properties that do not depend on either implementation."""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from uci_fixture import write_fixture_files, write_legacy_pickle

from bnaf.core.errors import BnafError
from bnaf.data import uci
from bnaf.data.legacy_pickle import read_dataframe_pickle, read_legacy_dataframe
from bnaf.data.prepare import prepare
from bnaf.data.registry import get
from bnaf.data.store import read_attrs, read_prepared

ROWS = {"power": 1000, "gas": 700, "hepmass": 600, "miniboone": 300, "bsds300": 90}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    write_fixture_files(root, ROWS, seed=3)
    return root


# ---- the reference recipes, restated literally in the order of MAF's code -----------------
def _maf_tail(data):
    N_test = int(0.1 * data.shape[0])
    data_test = data[-N_test:]
    data = data[0:-N_test]
    N_validate = int(0.1 * data.shape[0])
    data_validate = data[-N_validate:]
    data_train = data[0:-N_validate]
    return data_train, data_validate, data_test


def _maf_trainval_norm(data_train, data_validate, data_test):
    data = np.vstack((data_train, data_validate))
    mu = data.mean(axis=0)
    s = data.std(axis=0)
    return (data_train - mu) / s, (data_validate - mu) / s, (data_test - mu) / s


def maf_power(data):
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    N = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(N, 1)
    gap_noise = 0.001 * rng.rand(N, 1)
    sm_noise = rng.rand(N, 3)
    time_noise = np.zeros((N, 1))
    noise = np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    data = data + noise
    return _maf_trainval_norm(*_maf_tail(data))


def maf_gas(data):
    data = data.drop("Meth", axis=1)  # MAF: drop(..., inplace=True), deprecated in pandas 3
    data = data.drop("Eth", axis=1)
    data = data.drop("Time", axis=1)

    def numbers(d):
        return (d.corr() > 0.98).values.sum(axis=1)

    B = numbers(data)
    while np.any(B > 1):
        data = data.drop(data.columns[np.where(B > 1)[0][0]], axis=1)
        B = numbers(data)
    data = (data - data.mean()) / data.std()
    data = data.values
    N_test = int(0.1 * data.shape[0])
    data_test = data[-N_test:]
    data_train = data[0:-N_test]
    N_validate = int(0.1 * data_train.shape[0])
    return data_train[0:-N_validate], data_train[-N_validate:], data_test


def maf_hepmass(path):
    data_train = pd.read_csv(path / "1000_train.csv", index_col=False)
    data_test = pd.read_csv(path / "1000_test.csv", index_col=False)
    data_train = data_train[data_train[data_train.columns[0]] == 1]
    data_train = data_train.drop(data_train.columns[0], axis=1)
    data_test = data_test[data_test[data_test.columns[0]] == 1]
    data_test = data_test.drop(data_test.columns[0], axis=1)
    data_test = data_test.drop(data_test.columns[-1], axis=1)
    mu = data_train.mean()
    s = data_train.std()
    data_train = ((data_train - mu) / s).values
    data_test = ((data_test - mu) / s).values
    features_to_remove = []
    for i, feature in enumerate(data_train.T):
        c = Counter(feature)
        max_count = np.array([v for k, v in sorted(c.items())])[0]
        if max_count > 5:
            features_to_remove.append(i)
    keep = np.array([i for i in range(data_train.shape[1]) if i not in features_to_remove])
    data_train, data_test = data_train[:, keep], data_test[:, keep]
    N_validate = int(data_train.shape[0] * 0.1)
    return data_train[0:-N_validate], data_train[-N_validate:], data_test


def _assert_splits(prepared, reference):
    for name, ref in zip(("train", "validation", "test"), reference):
        got = prepared.splits[name]
        assert got.dtype == np.float32 and got.shape == ref.shape, name
        np.testing.assert_array_equal(got, ref.astype(np.float32), err_msg=name)


# ---- recipes ---------------------------------------------------------------------------------
def test_power_matches_maf(raw):
    data = np.load(raw / "power" / "data.npy")
    _assert_splits(uci.prepare_power(raw), maf_power(data.copy()))


def test_power_noise_draw_order(tmp_path):
    """With constant measurements each standardised column is its noise, rescaled: column 0
    (active power) is the SECOND uniform draw after the seed-42 shuffle, column 1 (voltage)
    the first, columns 2-4 the next (N, 3) block."""
    n = 400
    data = np.tile(np.arange(8.0), (n, 1))
    data[:, 7] = np.arange(n)  # time of day varies (its noise is zero)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", data)
    p = uci.prepare_power(tmp_path)
    x = np.vstack([p.splits[s].astype(np.float64) for s in ("train", "validation", "test")])
    rng = np.random.RandomState(42)
    rng.permutation(n)  # the same stream consumption as shuffling n rows
    first, second, block = rng.rand(n), rng.rand(n), rng.rand(n, 3)
    for col, draw in [
        (0, second),
        (1, first),
        (2, block[:, 0]),
        (3, block[:, 1]),
        (4, block[:, 2]),
    ]:
        assert np.corrcoef(x[:, col], draw)[0, 1] > 1 - 1e-6, col


def test_gas_matches_maf_and_reads_the_old_pickle(raw):
    frame = read_dataframe_pickle(raw / "gas" / "ethylene_CO.pickle")
    p = uci.prepare_gas(raw)
    _assert_splits(p, maf_gas(frame.copy()))
    # the fixture's near-duplicate sensors: MAF drops the FIRST column of each correlated group
    assert [c for c in frame.columns[3:] if c not in p.attrs["columns"]] == [
        "Sensor2",
        "Sensor5",
        "Sensor7",
        "Sensor11",
    ]
    x = np.vstack([p.splits[s].astype(np.float64) for s in ("train", "validation", "test")])
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)  # full-data statistics
    np.testing.assert_allclose(x.std(axis=0, ddof=1), 1, atol=1e-6)  # pandas' ddof 1


@pytest.mark.parametrize("version", ["0.19", "0.20"])
def test_old_pandas_pickle_round_trip(tmp_path, version):
    rng = np.random.default_rng(1)
    columns = ["Time", "Meth", "Eth", "S0", "S1"]
    values = rng.normal(size=(50, 4))
    path = tmp_path / "frame.pickle"
    write_legacy_pickle(columns, values, path, version)
    frame = read_legacy_dataframe(path)
    assert list(frame.columns) == columns
    np.testing.assert_array_equal(frame["Time"].to_numpy(), np.arange(50) * 10)
    np.testing.assert_array_equal(frame[columns[1:]].to_numpy(), values)
    # pandas 3 itself reads the 0.20 layout (column labels as object dtype) but not 0.19's
    pd.testing.assert_frame_equal(read_dataframe_pickle(path), frame, check_column_type=False)
    if version == "0.19":
        with pytest.raises(ModuleNotFoundError, match="pandas.indexes"):
            pd.read_pickle(path)


def test_modern_pickle_and_refusals(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    frame.to_pickle(tmp_path / "new.pickle")
    pd.testing.assert_frame_equal(read_dataframe_pickle(tmp_path / "new.pickle"), frame)
    import os

    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps(os.getcwd, protocol=2))  # any non-data global
    with pytest.raises(BnafError, match="cannot read this pickled DataFrame"):
        read_dataframe_pickle(evil)
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle")
    with pytest.raises(BnafError, match="cannot read"):
        read_dataframe_pickle(tmp_path / "junk.pickle")


def test_hepmass_matches_maf(raw):
    p = uci.prepare_hepmass(raw)
    _assert_splits(p, maf_hepmass(raw / "hepmass"))
    # smallest value 6 times (f8) or a small discrete set (f3): dropped; 5 times (f7) and a
    # frequent value that is not the smallest (f11): kept
    assert [f"f{i}" for i in range(27) if f"f{i}" not in p.attrs["columns"]] == ["f3", "f8"]


def test_miniboone_matches_maf(raw):
    data = np.load(raw / "miniboone" / "data.npy")
    _assert_splits(uci.prepare_miniboone(raw), _maf_trainval_norm(*_maf_tail(data)))


def test_bsds300_copied_block_by_block(raw, tmp_path):
    p = uci.prepare_bsds300(raw, block_rows=7)
    out = tmp_path / "b.h5"
    from bnaf.data.store import write_prepared

    write_prepared(out, p, {})
    got = read_prepared(out)
    with h5py.File(raw / "BSDS300" / "BSDS300.hdf5", "r") as f:
        for s in ("train", "validation", "test"):
            np.testing.assert_array_equal(got[s], f[s][()])
            assert got[s].dtype == f[s].dtype


def test_split_sizes_are_mafs():
    """Published sizes (MAF Table/B-NAF Table 1 data) follow from the tail split of N rows."""
    for n, sizes in [
        (2049280, (1659917, 184435, 204928)),  # POWER
        (1052065, (852174, 94685, 105206)),  # GAS
        (36488, (29556, 3284, 3648)),  # MINIBOONE
    ]:
        assert tuple(len(s) for s in uci.tail_split(np.empty((n, 1)))) == sizes


@pytest.mark.skipif(not (SHARED / "miniboone" / "val.npy").is_file(), reason="no shared mirror")
def test_miniboone_real_validation_and_test_splits(tmp_path):
    """The real MAF-prepared MINIBOONE val/test (N = 36,488): place them at the tail of a raw
    array whose train part makes train+val exactly standardised; our recipe must then return
    them unchanged, which fails for any other split position or for ddof 1 statistics."""
    val = np.load(SHARED / "miniboone" / "val.npy")
    test = np.load(SHARED / "miniboone" / "test.npy")
    n_train = 29556
    assert (n_train + len(val) + len(test), val.shape[1]) == (36488, 43)
    z = np.random.default_rng(0).normal(size=(n_train, 43))
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    n = n_train + len(val)
    m_t = -val.sum(axis=0) / n_train  # train mean making the train+val mean 0
    a = np.sqrt((n - (val**2).sum(axis=0)) / n_train - m_t**2)  # ... and its variance 1
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", np.vstack((m_t + a * z, val, test)))
    p = uci.prepare_miniboone(tmp_path)
    np.testing.assert_allclose(p.splits["validation"], val.astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_allclose(p.splits["test"], test.astype(np.float32), rtol=0, atol=1e-6)
    # the real splits are standardised by train+val statistics, not their own
    assert np.abs(val.mean(axis=0)).max() > 1e-3 and np.abs(test.mean(axis=0)).max() > 1e-3


# ---- the prepare stage -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["power", "gas", "hepmass", "miniboone", "bsds300"])
def test_prepare_is_byte_identical_and_self_describing(raw, tmp_path, name):
    shapes = prepare(name, raw, tmp_path / "a.h5")
    prepare(name, raw, tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    attrs = read_attrs(tmp_path / "a.h5")
    assert attrs["dataset"] == name and attrs["recipe_version"] == f"maf-{name}-1"
    assert attrs["shapes"] == {k: v[0] for k, v in shapes.items()}
    assert attrs["archive_checksum"] == {uci.MAF_ARCHIVE: uci.MAF_MD5}
    assert set(attrs["raw_sha256"]) == set(get(name).files[0].members)


def test_prepare_missing_raw_file(tmp_path):
    with pytest.raises(BnafError, match="raw file not found: .*power/data.npy"):
        prepare("power", tmp_path, tmp_path / "p.h5")
    assert not (tmp_path / "p.h5").exists()


# ---- what the recipes keep and refuse ---------------------------------------------------------
def test_hepmass_rows_ending_in_a_comma_read_as_maf_reads_them(raw, tmp_path):
    """MAF reads the CSVs with ``index_col=False``: rows with a trailing delimiter keep the label
    in the first column instead of turning it into the index and shifting every feature."""
    (tmp_path / "hepmass").mkdir()
    for split in ("train", "test"):
        lines = (raw / "hepmass" / f"1000_{split}.csv").read_text().splitlines()
        (tmp_path / "hepmass" / f"1000_{split}.csv").write_text(
            "\n".join(lines[:1] + [line + "," for line in lines[1:]]) + "\n"
        )
    want, got = uci.prepare_hepmass(raw), uci.prepare_hepmass(tmp_path)
    for s in ("train", "validation", "test"):
        np.testing.assert_array_equal(got.splits[s], want.splits[s], err_msg=s)


def test_bsds300_keeps_the_dtype_of_its_file(tmp_path):
    """BSDS300 is used as stored (MAF): a float64 file gives float64 splits, said in the attrs."""
    (tmp_path / "BSDS300").mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for s, n in (("train", 20), ("validation", 5), ("test", 7)):
            f.create_dataset(s, data=rng.normal(size=(n, 63)))
    prepare("bsds300", tmp_path, tmp_path / "b.h5")
    got, attrs = read_prepared(tmp_path / "b.h5"), read_attrs(tmp_path / "b.h5")
    assert {s: got[s].dtype for s in got} == dict.fromkeys(got, np.dtype(np.float64))
    assert attrs["stored_dtype"] == "float64"


def test_the_other_recipes_say_they_store_float32(raw, tmp_path):
    prepare("miniboone", raw, tmp_path / "m.h5")
    assert read_attrs(tmp_path / "m.h5")["stored_dtype"] == "float32"
    assert read_prepared(tmp_path / "m.h5")["train"].dtype == np.float32


def _bsds300(root: Path, splits: dict) -> Path:
    (root / "BSDS300").mkdir()
    path = root / "BSDS300" / "BSDS300.hdf5"
    with h5py.File(path, "w") as f:
        for name, data in splits.items():
            f.create_dataset(name, data=data)
    return path


_OK = np.zeros((4, 63), np.float32)


@pytest.mark.parametrize(
    "splits, message",
    [
        ({"train": _OK, "test": _OK}, r"no dataset\(s\) \['validation'\]; has \['test', 'tr"),
        ({"train": _OK, "validation": _OK[:0], "test": _OK}, "non-empty 2-D arrays"),
        ({"train": _OK, "validation": _OK[:, :62], "test": _OK}, "splits of different widths"),
        (
            {"train": _OK, "validation": _OK.astype(np.float64), "test": _OK},
            r"different dtypes \['float32', 'float64', 'float32'\]",
        ),
        ({"train": _OK, "validation": _OK + np.nan, "test": _OK}, "validation has non-finite"),
    ],
    ids=["missing", "empty", "widths", "dtypes", "nan"],
)
def test_a_bsds300_file_that_is_not_one_dataset_is_one_error(tmp_path, splits, message):
    path = _bsds300(tmp_path, splits)
    with pytest.raises(BnafError, match=message) as err:
        prepare("bsds300", tmp_path, tmp_path / "b.h5")
    assert str(path) in str(err.value)
    assert not (tmp_path / "b.h5").exists()


def test_one_column_bsds300_splits_are_a_dataset(tmp_path):
    """Only empty splits are refused: one row or one column is a (small) dataset."""
    _bsds300(tmp_path, {s: np.ones((1, 1), np.float32) for s in ("train", "validation", "test")})
    assert uci.prepare_bsds300(tmp_path).splits["train"].shape == (1, 1)


def test_raw_files_of_the_wrong_shape_are_one_error(tmp_path):
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", np.zeros((50, 7)))  # a column short
    with pytest.raises(BnafError, match=r"power/data.npy: expected \(N, 8\), got \(50, 7\)"):
        uci.prepare_power(tmp_path)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", np.zeros(50))
    with pytest.raises(BnafError, match=r"miniboone/data.npy: expected a 2-D array, got \(50,\)"):
        uci.prepare_miniboone(tmp_path)


def test_unreadable_raw_files_name_the_file_and_the_reason(tmp_path):
    (tmp_path / "miniboone").mkdir()
    npy = tmp_path / "miniboone" / "data.npy"
    np.save(npy, np.array([{"a": 1}], dtype=object))  # a pickle inside: never loaded
    with pytest.raises(BnafError, match=r"not a readable .npy file \(.*allow_pickle"):
        uci.prepare_miniboone(tmp_path)
    (tmp_path / "hepmass").mkdir()
    (tmp_path / "hepmass" / "1000_train.csv").write_bytes(b"")
    with pytest.raises(BnafError, match=r"1000_train.csv: not a readable CSV file \(No columns"):
        uci.prepare_hepmass(tmp_path)


def test_gas_without_the_columns_maf_drops_is_one_error(tmp_path):
    (tmp_path / "gas").mkdir()
    frame = pd.DataFrame({"Time": [0.0, 1.0], "Eth": [0.1, 0.2], "S0": [1.0, 2.0]})
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    with pytest.raises(BnafError, match=r"ethylene_CO.pickle: no column\(s\) \['Meth'\]"):
        uci.prepare_gas(tmp_path)


def test_hepmass_files_whose_columns_disagree_are_one_error(raw, tmp_path):
    """MAF's pandas arithmetic aligns columns by name: a test file with other columns would
    give NaN features, so it is refused naming both."""
    (tmp_path / "hepmass").mkdir()
    train = (raw / "hepmass" / "1000_train.csv").read_text()
    (tmp_path / "hepmass" / "1000_train.csv").write_text(train)
    lines = train.splitlines()
    # the test file without MAF's extra last column: MAF's drop then removes a feature
    (tmp_path / "hepmass" / "1000_test.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(BnafError, match=r"only in train: \['f26'\]; only in test: \[\]"):
        uci.prepare_hepmass(tmp_path)
    # the same columns in another order
    header, *rows = lines
    names = header.split(",")
    order = [0, 2, 1] + list(range(3, len(names))) + [len(names) - 1]
    swapped = [",".join([r.split(",")[i] for i in order]) for r in [header, *rows]]
    (tmp_path / "hepmass" / "1000_test.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(BnafError, match=r"differ from the train file's \(the same columns in an"):
        uci.prepare_hepmass(tmp_path)


def test_a_constant_column_is_refused_not_divided_by_zero(tmp_path):
    """A constant feature standardises to 0/0: refused by name, never stored as NaN."""
    (tmp_path / "miniboone").mkdir()
    data = np.random.default_rng(0).normal(size=(60, 4))
    data[:, 2] = 7.0
    np.save(tmp_path / "miniboone" / "data.npy", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one error line, no numpy warning before it
        with pytest.raises(BnafError, match="split 'train' has non-finite values after prepa"):
            uci.prepare_miniboone(tmp_path)


def test_a_recipe_without_its_raw_file_says_which_stage_makes_it(tmp_path):
    with pytest.raises(BnafError, match=r"raw file not found: .*hepmass/1000_train.csv \(run"):
        uci.prepare_hepmass(tmp_path)


def test_hepmass_files_without_features_or_signal_rows_are_one_error(tmp_path):
    folder = tmp_path / "hepmass"
    folder.mkdir()
    (folder / "1000_train.csv").write_text("# label,f0\n" + "1,0.5\n" * 20)
    (folder / "1000_test.csv").write_bytes(b"\x00\x01garbage")  # one column
    with pytest.raises(BnafError, match=r"1000_test.csv: 1 column\(s\), expected 3\+"):
        uci.prepare_hepmass(tmp_path)
    (folder / "1000_test.csv").write_text("# label,f0,mass\n" + "0,0.5,1000\n" * 20)
    with pytest.raises(BnafError, match=r"1000_test.csv: 0 rows labelled 1, expected 10\+"):
        uci.prepare_hepmass(tmp_path)
