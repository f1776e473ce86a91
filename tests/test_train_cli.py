"""``python -m bnaf uci train`` as a command: its options, where one seed and a pack write, the
thread and device overrides, and what a run records about the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from uci_synthetic import write_prepared

from bnaf.core.errors import BnafError
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


@pytest.mark.threads
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

    with h5py.File(data, "a") as f:
        f.attrs["dataset"] = "toy"  # a prepared file names its dataset (bnaf/data/store.py)
    p = dataclasses.replace(load_uci(_params_file(tmp_path)))
    with pytest.raises(BnafError, match="holds dataset 'toy', not 'power'"):
        train_run(p, data, "power", "L1_H4", 0, tmp_path / "w", log=lambda _: None)


def test_metrics_json_is_the_runs_own_document(tmp_path: Path, data: Path) -> None:
    """Every key of a run's ``metrics.json`` against what this test computes or knows: the
    log-likelihoods recomputed from the saved model on the splits, the sizes, the budget, the
    times bounded by the call's own (one run, and each of a pack of two, whose times are
    shares), and selection reads it as written."""
    import time as clock

    import numpy as np

    from bnaf.core.stats import log_likelihoods
    from bnaf.flows import count_parameters, load_flow
    from bnaf.uci.select import read_metrics
    from bnaf.uci.splits import load_splits
    from bnaf.uci.train import _ll, train_runs

    p = load_uci(_params_file(tmp_path, max_epochs=2))
    splits = load_splits(data)
    for seeds in ([3], [3, 4]):
        outs = [tmp_path / f"pack{len(seeds)}" / "L1_H4" / f"seed{s}" for s in seeds]
        start = clock.perf_counter()
        ms = train_runs(p, data, "toy", "L1_H4", seeds, outs, log=lambda _: None)
        elapsed = clock.perf_counter() - start
        assert sum(m["wall_s"] for m in ms) <= elapsed
        for seed, out, m in zip(seeds, outs, ms):
            assert m == json.loads((out / "metrics.json").read_text())
            model = load_flow(out / "model.pt")
            assert (m["part"], m["dataset"], m["config"], m["seed"]) == (
                "uci",
                "toy",
                "L1_H4",
                seed,
            )
            assert (m["layers"], m["hidden_factor"], m["hidden_units"]) == (1, 4, 12)
            assert (m["budget"], m["reduced"]) == ("quick", True)
            assert m["model"] == model.config and m["model"]["dim"] == 3
            assert m["parameters"] == {c: count_parameters(model, c) for c in ("paper", "full")}
            assert (
                1 <= m["best_epoch"] <= m["epochs_run"] == 2 and m["stop_reason"] == "max_epochs"
            )
            for split in ("validation", "test"):
                values = log_likelihoods(model, splits[split])
                assert m[split]["log_likelihood"] == pytest.approx(float(values.mean()), abs=1e-9)
                assert m[split]["n"] == len(splits[split])
                se = float(values.std()) / np.sqrt(len(values))
                assert m[split]["stderr"] == pytest.approx(se, rel=1e-3)
            assert m["units"] == "nats per sample (log-likelihood, higher is better)"
            assert m["train_samples"] == 300 and m["train_subset"] is None
            assert 0 < m["train_s"] <= elapsed and 0 < m["wall_s"] <= elapsed / len(seeds) + 1e-6
            share = m["train_s"] / len(seeds)
            steps = 600 / 200  # 2 epochs of 300 rows, in units of full batches of 200
            assert m["throughput"]["steps_per_s"] == pytest.approx(steps / share)
            assert m["throughput"]["train_samples_per_s"] == pytest.approx(600 / share)
            assert m["pack"] == {"seeds": seeds, "members": len(seeds)}
            assert (m["resumes"], m["nonfinite_events"], m["device"]) == (0, [], "cpu")
            assert m["hardware"] == cpu_model() and m["environment"]["device"] == "cpu"
            assert m["params"]["train"]["max_epochs"] == 2 and len(m["history"]) == 2
            assert read_metrics(out / "metrics.json")["seed"] == seed
    with pytest.raises(
        BnafError, match="^the final model gives a non-finite log-likelihood on an "
    ):
        _ll(torch.tensor([0.0, float("nan")], dtype=torch.float64), 2)


def test_a_run_without_a_finite_validation_has_nothing_to_evaluate(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    import bnaf.uci.trainer

    monkeypatch.setattr(bnaf.uci.trainer.Trainer, "validate", lambda self: (math.nan, math.nan))
    p = load_uci(_params_file(tmp_path))
    with pytest.raises(BnafError, match=r"^seed 0: no epoch gave a finite validation log-lik"):
        train_run(p, data, "toy", "L1_H4", 0, tmp_path / "r", log=lambda _: None)
    assert not (tmp_path / "r" / "metrics.json").exists()
