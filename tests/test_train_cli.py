"""``python -m bnaf uci train`` as a command: its options, where one seed and a pack write, the
thread and device overrides, and what a run records about the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from uci_synthetic import write_prepared

from bnaf.uci.params import load_uci
from bnaf.uci.train import add_arguments, cpu_model, run, train_run

pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"
REQUIRED = ["--params", "p.yaml", "--data", "d.h5", "--dataset", "toy", "--config", "L1_H4",
            "--seed", "0", "--out", "o"]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uci train")
    add_arguments(parser)
    return parser


def test_the_options_parse_to_their_types_and_defaults() -> None:
    args = _parser().parse_args(REQUIRED[:-3] + ["1", "0", "2", "--out", "o", "--threads", "3"])
    assert args.seed == [1, 0, 2] and args.threads == 3 and args.device is None
    assert (args.params, args.data, args.dataset, args.config, args.out) == (
        "p.yaml", "d.h5", "toy", "L1_H4", "o")  # fmt: skip
    assert _parser().parse_args(REQUIRED).threads is None


@pytest.mark.parametrize(
    "option", ["--params", "--data", "--dataset", "--config", "--seed", "--out"]
)
def test_every_run_defining_option_is_required(option: str, capsys) -> None:
    i = REQUIRED.index(option)
    with pytest.raises(SystemExit):
        _parser().parse_args(REQUIRED[:i] + REQUIRED[i + 2 :])
    assert f"the following arguments are required: {option}" in capsys.readouterr().err


def test_the_help_says_what_each_option_is() -> None:
    text = " ".join(_parser().format_help().split())
    for words in ("--params PARAMS params/<budget>/uci.yaml",
                  "--data DATA prepared HDF5 file (train/validation/test)",
                  "--dataset DATASET dataset name, e.g. power",
                  "--config CONFIG grid point, e.g. L2_H40",
                  "one seed (--out is its run folder), or several trained as one pack (--out is "
                  "the config folder; each seed writes seed<k>/ in it)",
                  "--out OUT run folder (one seed) or config folder",
                  "--device DEVICE overrides train.device (auto/cpu/cuda)",
                  "--threads THREADS overrides train.threads"):  # fmt: skip
        assert words in text, words


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_prepared(tmp_path / "prepared" / "toy.h5", dim=3, sizes=(300, 100, 100))


def _params_file(tmp_path: Path, **train) -> Path:
    raw = yaml.safe_load(QUICK.read_text())
    raw["uci"]["train"] |= {"max_epochs": 1, "train_subset": None, **train}
    path = tmp_path / "uci.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _args(tmp_path: Path, data: Path, out: Path, seeds: list[str], **extra) -> argparse.Namespace:
    argv = ["--params", str(_params_file(tmp_path, **extra.pop("train", {}))), "--data",
            str(data), "--dataset", "toy", "--config", "L1_H4", "--seed", *seeds, "--out",
            str(out)]  # fmt: skip
    for k, v in extra.items():
        argv += [f"--{k}", str(v)]
    return _parser().parse_args(argv)


def test_one_seed_writes_into_out_and_two_seeds_into_its_seed_folders(tmp_path, data) -> None:
    one = tmp_path / "one"
    assert run(_args(tmp_path, data, one, ["4"])) == 0
    assert json.loads((one / "metrics.json").read_text())["seed"] == 4
    assert not (one / "seed4").exists()
    two = tmp_path / "two"
    assert run(_args(tmp_path, data, two, ["4", "5"])) == 0
    for s in (4, 5):
        assert json.loads((two / f"seed{s}" / "metrics.json").read_text())["seed"] == s
    assert not (two / "metrics.json").exists()


@pytest.mark.parametrize(("given", "expected"), [(1, 1), (2, 2), (0, None), (None, 1)])
def test_threads_override_the_params_and_zero_leaves_torch_alone(
    tmp_path: Path, data: Path, given: int | None, expected: int | None
) -> None:
    torch.set_num_threads(2 if given == 1 else 1)
    before = torch.get_num_threads()
    extra = {} if given is None else {"threads": given}
    run(_args(tmp_path, data, tmp_path / "r", ["0"], **extra))  # params: threads 1
    assert torch.get_num_threads() == (before if expected is None else expected)


def test_the_device_option_overrides_the_params(tmp_path: Path, data: Path) -> None:
    """``train.device: cuda`` in the params, ``--device cpu`` on the command line: the run
    trains on the CPU (without the override it would need CUDA)."""
    out = tmp_path / "r"
    assert run(_args(tmp_path, data, out, ["0"], device="cpu", train={"device": "cuda"})) == 0
    assert json.loads((out / "metrics.json").read_text())["device"] == "cpu"
    p = load_uci(_params_file(tmp_path, device="cuda"))
    m = train_run(p, data, "toy", "L1_H4", 0, tmp_path / "f", device="cpu", log=lambda _: None)
    assert m["device"] == "cpu" and m["dataset"] == "toy"


def test_a_run_records_the_cpu_model_name() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(), re.MULTILINE)
    if not names:
        pytest.skip("/proc/cpuinfo names no model")
    assert cpu_model() == names[0].strip()


def test_a_wrong_dataset_name_is_refused(tmp_path: Path, data: Path) -> None:
    """The prepared file says which dataset it holds; the run's name must agree."""
    import h5py

    from bnaf.core.errors import BnafError

    with h5py.File(data, "a") as f:
        f.attrs["dataset"] = "toy"  # a prepared file names its dataset (bnaf/data/store.py)
    p = dataclasses.replace(load_uci(_params_file(tmp_path)))
    with pytest.raises(BnafError, match="holds dataset 'toy', not 'power'"):
        train_run(p, data, "power", "L1_H4", 0, tmp_path / "w", log=lambda _: None)
