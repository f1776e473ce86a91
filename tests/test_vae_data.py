"""Image loaders of Table 2 on fixture files in the exact published formats (and the mirror)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from bnaf.core.errors import BnafError
from bnaf.data import registry
from bnaf.data.fetch import ChecksumError
from bnaf.data.images import FILES, OMNIGLOT_FILE, load_images, read_amat

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_amat(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(int(v)) for v in r) + "\n" for r in rows))


def mnist_fixture(root: Path, sizes=(30, 10, 12), seed=0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        name = f"mnist_static/binarized_mnist_{split}.amat"
        write_amat(root / name, rng.integers(0, 2, (n, 784)))
        paths[name] = root / name
    return paths


def frey_fixture(root: Path, n: int = 1965, seed: int = 0) -> Path:
    path = root / FILES["freyfaces"][0].name
    path.parent.mkdir(parents=True, exist_ok=True)
    ff = np.random.default_rng(seed).integers(0, 256, (560, n)).astype(np.uint8)
    savemat(path, {"ff": ff})
    return path


def test_read_amat_round_trip(tmp_path):
    rows = np.random.default_rng(1).integers(0, 2, (5, 784))
    write_amat(tmp_path / "x.amat", rows)
    got = read_amat(tmp_path / "x.amat")
    assert got.shape == (5, 784) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, rows)


@pytest.mark.parametrize(
    "text, match",
    [("0 1 1\n", "multiple"), (" ".join(["2"] * 784) + "\n", "other than 0 and 1"),
     (",".join(["1"] * 784) + "\n", "separators")],
)  # fmt: skip
def test_read_amat_rejects_other_formats(tmp_path, text, match):
    (tmp_path / "bad.amat").write_text(text)
    with pytest.raises(BnafError, match=match):
        read_amat(tmp_path / "bad.amat")


def test_mnist_fixture_splits_and_shuffle(tmp_path):
    paths = mnist_fixture(tmp_path)
    a = load_images("mnist", paths, seed=1, strict=False)
    b = load_images("mnist", paths, seed=2, strict=False)
    assert a.train.shape == (30, 1, 28, 28) and a.valid.shape == (10, 1, 28, 28)
    assert a.test.shape == (12, 1, 28, 28) and a.likelihood == "bernoulli"
    assert set(np.unique(a.train)) <= {0.0, 1.0}
    # training set shuffled once (a permutation of the file's rows); valid/test untouched
    raw = read_amat(paths["mnist_static/binarized_mnist_train.amat"]).reshape(-1, 1, 28, 28)
    assert sorted(map(bytes, a.train.astype(np.uint8))) == sorted(map(bytes, raw))
    assert not np.array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.valid, b.valid)
    with pytest.raises(BnafError, match="expected 50000"):
        load_images("mnist", paths, seed=1, strict=True)


def test_caltech_is_one_minus_data_in_fortran_order(tmp_path):
    rng = np.random.default_rng(3)
    sizes = (("train_data", 4100), ("val_data", 2264), ("test_data", 2307))
    mats = {k: rng.integers(0, 2, (n, 784)).astype(np.uint8) for k, n in sizes}
    path = tmp_path / FILES["caltech101"][0].name
    path.parent.mkdir(parents=True)
    savemat(path, mats)
    data = load_images("caltech101", {FILES["caltech101"][0].name: path}, seed=1)
    assert (data.train.shape[0], data.valid.shape[0], data.test.shape[0]) == (4100, 2264, 2307)
    # Fortran-order reshape of a row-major 28x28 image is its transpose
    expected = 1.0 - mats["test_data"].reshape(-1, 28, 28).transpose(0, 2, 1)
    np.testing.assert_array_equal(data.test[:, 0], expected)


def test_frey_split_depends_on_seed_and_covers_all(tmp_path):
    path = frey_fixture(tmp_path)
    paths = {FILES["freyfaces"][0].name: path}
    a = load_images("freyfaces", paths, seed=123)
    b = load_images("freyfaces", paths, seed=321)
    assert a.train.shape == (1565, 1, 28, 20) and a.valid.shape == a.test.shape == (200, 1, 28, 20)
    assert a.likelihood == "categorical" and 0.0 <= a.train.min() and a.train.max() <= 1.0
    levels = np.concatenate([a.train, a.valid, a.test]) * 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # exact 8-bit levels / 255
    # the Sylvester split: legacy numpy shuffle of ff.T / 255 with the run's seed
    ref = np.random.RandomState(123).permutation(1965)
    from scipy.io import loadmat

    ff = loadmat(path)["ff"]
    np.testing.assert_allclose(a.test[0, 0].ravel(), ff.T[ref[1765]] / 255.0, rtol=1e-6)
    assert not np.array_equal(a.test, b.test)


def test_omniglot_binarisation(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / OMNIGLOT_FILE[0]
    path.parent.mkdir(parents=True)
    savemat(path, {"data": rng.random((784, 1400)), "testdata": rng.random((784, 50))})
    a = load_images("omniglot", {OMNIGLOT_FILE[0]: path}, seed=1)
    b = load_images("omniglot", {OMNIGLOT_FILE[0]: path}, seed=2)
    assert a.train.shape == (55, 1, 28, 28) and a.valid.shape == (1345, 1, 28, 28)
    assert a.dynamic_binarization and len(np.unique(a.train)) > 2  # grey, binarised per batch
    assert set(np.unique(a.valid)) <= {0.0, 1.0} and set(np.unique(a.test)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a.test, b.test)  # fixed binarisation seed (777)


def test_registry_checksum_verification(tmp_path):
    mirror = tmp_path / "mirror"
    path = frey_fixture(mirror)
    md5 = "md5:" + hashlib.md5(path.read_bytes()).hexdigest()
    name = FILES["freyfaces"][0].name
    with pytest.raises(ChecksumError):  # the fixture is not the published file
        registry.fetch("freyfaces", tmp_path / "raw", mirror=mirror, retries=0)
    got = registry.fetch("freyfaces", tmp_path / "raw2", mirror=mirror, overrides={name: md5})
    assert load_images("freyfaces", got.paths, seed=1).train.shape == (1565, 1, 28, 20)


def test_registered_specs():
    assert set(registry.names("images")) == {"mnist", "freyfaces", "omniglot", "caltech101"}
    assert registry.get("caltech101").files[0].checksum == "md5:4483e9c14b188fd09937f9ea6f9ea777"
    assert registry.get("freyfaces").files[0].checksum == "md5:5aeb024d42b8a6091f30e5eb18c8a48d"


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(BnafError, match="unknown image dataset"):
        load_images("cifar", {}, seed=1)
    with pytest.raises(BnafError, match="not found"):
        load_images("freyfaces", {FILES["freyfaces"][0].name: tmp_path / "nope.mat"}, seed=1)


@pytest.mark.skipif(not MIRROR.is_dir(), reason="no offline mirror")
@pytest.mark.parametrize(
    "name, sizes, shape",
    [("mnist", (50000, 10000, 10000), (1, 28, 28)),
     ("caltech101", (4100, 2264, 2307), (1, 28, 28)),
     ("freyfaces", (1565, 200, 200), (1, 28, 20))],
)  # fmt: skip
def test_mirror(name, sizes, shape):
    data = load_images(name, {f.name: MIRROR / f.name for f in FILES[name]}, seed=123)
    assert (len(data.train), len(data.valid), len(data.test)) == sizes
    assert data.shape == shape and data.train.min() >= 0 and data.train.max() <= 1
    if name != "freyfaces":
        assert set(np.unique(data.test)) == {0.0, 1.0}


def test_paths_without_the_datasets_file_are_one_error_line(tmp_path):
    """A status file written by hand or by another version may name other files: one error
    naming the file expected and those given, not a KeyError."""
    other = tmp_path / "frey_rawface.mat"
    other.write_bytes(b"")
    with pytest.raises(BnafError, match=r"freyfaces: no path given for freyfaces/frey_rawface"):
        load_images("freyfaces", {"frey_rawface.mat": other}, seed=1)
    with pytest.raises(BnafError, match=r"the paths name nothing"):
        load_images("freyfaces", {}, seed=1)
