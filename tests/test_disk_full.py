"""A full disk, on a real small tmpfs: every stage that writes ends in exit code 2 with one line
naming the path, leaves nothing partial behind and changes no good file; the training stages
refuse before their first step when the disk cannot hold the run.

Needs root (mount); skipped where the kernel or container refuses a tmpfs mount.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults import _metrics
from uci_fixture import write_fixture_files
from uci_synthetic import write_prepared

from bnaf.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 KiB tmpfs, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and a kernel that allows it)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fails_in_one_line(argv: list[str], named: str, capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit code {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith("error: ") and named in err, err
    return err


def _fill(path: Path, limit: int | None = None) -> None:
    """Write ``path`` until the disk is full (or ``limit`` bytes are written)."""
    written = 0
    try:
        with open(path, "wb", buffering=0) as f:
            while limit is None or written < limit:
                written += f.write(b"\0" * 4096)
    except OSError:  # the disk is full
        pass


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_prepare_on_a_full_disk_leaves_no_partial_file(
    small_disk: Path, tmp_path: Path, capsys
) -> None:
    raw = tmp_path / "raw"
    write_fixture_files(raw)
    out = small_disk / "power.h5"
    _fill(small_disk / "filler", limit=88 * 1024)  # 8 KiB left: the HDF5 file needs more
    argv = ["data", "prepare", "power", "--raw-dir", str(raw), "--out", str(out)]
    err = _fails_in_one_line(argv, str(small_disk), capsys)
    assert "space" in err.lower() or "no space" in err.lower() or "full" in err.lower(), err
    assert _leftovers(small_disk) == ["filler"]  # neither the file nor its temporary twin


def test_uci_train_refuses_before_training_when_the_run_cannot_fit(
    small_disk: Path, tmp_path: Path, capsys
) -> None:
    data = write_prepared(tmp_path / "power.h5")
    out = small_disk / "run"
    argv = ["uci", "train", "--params", str(QUICK / "uci.yaml"), "--data", str(data)]
    argv += ["--dataset", "power", "--config", "L1_H2", "--seed", "0", "--out", str(out)]
    # L1_H2 on d=6 is a few KiB of weights, but metrics and logs need their MiB
    err = _fails_in_one_line(argv, str(out), capsys)
    assert "MiB free" in err
    assert _leftovers(out) == [".lock"]  # no epoch ran, nothing was written


@pytest.mark.parametrize("model", ["bnaf", "planar"])
def test_toy_train_refuses_before_training_when_the_run_cannot_fit(
    model: str, small_disk: Path, capsys
) -> None:
    out = small_disk / "run"
    kind, target = ("density", "8gaussians") if model == "bnaf" else ("energy", "U1")
    argv = ["toy", "train", "--params", str(QUICK / "toy.yaml"), "--kind", kind]
    argv += ["--target", target, "--model", model, "--out", str(out)]
    err = _fails_in_one_line(argv, str(out), capsys)
    assert "MiB free" in err
    assert _leftovers(out) == [".lock"]


def test_a_table_on_a_full_disk_keeps_the_good_one(
    small_disk: Path, tmp_path: Path, capsys
) -> None:
    """The selection JSON already there survives a failed rewrite on a full disk."""
    metrics = _metrics(tmp_path, 0)
    out = small_disk / "power.json"
    argv = ["uci", "select", "--params", str(QUICK / "uci.yaml"), "--dataset", "power"]
    argv += ["--metrics", str(metrics), "--out", str(out)]
    if main(argv) != 0:  # the fixture above is what select reads; keep it honest
        pytest.fail(capsys.readouterr().err)
    good = out.read_bytes()
    _fill(small_disk / "filler")
    _fails_in_one_line(argv, str(small_disk), capsys)
    assert out.read_bytes() == good
    assert _leftovers(small_disk) == ["filler", "power.json"]


def test_training_on_a_read_only_disk_stops_before_its_first_step(
    small_disk: Path, tmp_path: Path, capsys
) -> None:
    # root writes through permission bits; a read-only mount stops even root
    remount = ["mount", "-o", "remount,ro", str(small_disk)]
    if subprocess.run(remount, capture_output=True).returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only here")
    data = write_prepared(tmp_path / "power.h5")
    out = small_disk / "run"
    argv = ["uci", "train", "--params", str(QUICK / "uci.yaml"), "--data", str(data)]
    argv += ["--dataset", "power", "--config", "L1_H2", "--seed", "0", "--out", str(out)]
    err = _fails_in_one_line(argv, str(out), capsys)
    assert "Read-only" in err and not out.exists()
