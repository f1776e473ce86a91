"""Stage ``train`` on tiny synthetic prepared files: learning, exact figures, resume, NaNs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from uci_synthetic import write_prepared

import bnaf.uci.trainer
from bnaf.cli import main
from bnaf.core.errors import BnafError
from bnaf.core.history import read_history
from bnaf.flows import load_flow
from bnaf.uci.params import load_uci
from bnaf.uci.train import load_splits, subset, train_run

# The pipeline trains in float32 (HDF5 splits are float32): test it as it runs.
pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"


def _params(**train):
    p = load_uci(QUICK)
    base = dict(max_epochs=6, train_subset=None, device="cpu", threads=1, keep_checkpoint=False)
    p.train = dataclasses.replace(p.train, **(base | train))
    return p


def _quiet(_line: str) -> None:
    pass


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_prepared(tmp_path / "prepared" / "toy.h5", dim=3, sizes=(600, 200, 200))


def test_training_lowers_nll_and_writes_exact_metrics(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "run"
    m = train_run(_params(max_epochs=8), data, "toy", "L1_H4", 0, out, log=_quiet)
    hist = m["history"]
    assert len(hist) == m["epochs_run"] == 8 and m["stop_reason"] == "max_epochs"
    assert hist[-1]["train_nll"] < hist[0]["train_nll"]
    assert hist[-1]["validation_ll"] > hist[0]["validation_ll"]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"] == m["test"] and on_disk["config"] == "L1_H4" and on_disk["seed"] == 0
    for key in ("parameters", "best_epoch", "wall_s", "device", "environment", "throughput"):
        assert key in on_disk
    assert on_disk["parameters"]["paper"] < on_disk["parameters"]["full"]
    assert not (out / "checkpoint.pt").exists()
    # history.csv holds the same rows, written before metrics.json (which marks a finished run)
    curves = read_history(out / "history.csv")
    assert curves["epoch"] == [h["epoch"] for h in hist]
    assert curves["train_nll"] == [h["train_nll"] for h in hist]
    assert (out / "history.csv").stat().st_mtime_ns <= (out / "metrics.json").stat().st_mtime_ns
    # Independent recomputation from the saved model: per-sample mean over the whole split.
    model = load_flow(out / "model.pt").double()
    splits = load_splits(data)
    with torch.no_grad():
        for split, key in (("validation", "validation"), ("test", "test")):
            lp = model.log_prob(splits[split].double())
            assert m[key]["n"] == len(lp)
            assert m[key]["log_likelihood"] == pytest.approx(float(lp.mean()), abs=1e-4)
            se = float(lp.std()) / math.sqrt(len(lp))
            assert m[key]["stderr"] == pytest.approx(se, rel=1e-3)
    # The best epoch's validation figure is the one reported.
    best = hist[m["best_epoch"] - 1]["validation_ll"]
    assert m["validation"]["log_likelihood"] == pytest.approx(best, abs=1e-9)


def _comparable(m: dict) -> dict:
    drop = {"wall_s", "train_s", "throughput", "resumes", "environment", "history"}
    out = {k: v for k, v in m.items() if k not in drop}
    out["history"] = [
        {k: v for k, v in h.items() if k not in ("samples_per_s", "seconds")} for h in m["history"]
    ]
    return out


def _same_models(a: Path, b: Path) -> None:
    sa = torch.load(a, weights_only=False)["state_dict"]
    sb = torch.load(b, weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_stop_and_resume_is_bit_identical(tmp_path: Path, data: Path) -> None:
    # patience 1, cooldown 0 and a 1-nat improvement threshold: decays (each reloading the
    # best state) happen within 8 epochs, so the resume covers them too.
    p = _params(max_epochs=8, patience=1, cooldown=0, lr=0.05, threshold=1.0)
    full = train_run(p, data, "toy", "L1_H4", 1, tmp_path / "a", log=_quiet)
    assert sum(h["decay"] for h in full["history"]) >= 2
    parts = tmp_path / "b"
    assert train_run(p, data, "toy", "L1_H4", 1, parts, stop_after_epochs=3, log=_quiet) is None
    assert (parts / "checkpoint.pt").is_file() and not (parts / "metrics.json").exists()
    assert train_run(p, data, "toy", "L1_H4", 1, parts, stop_after_epochs=2, log=_quiet) is None
    resumed = train_run(p, data, "toy", "L1_H4", 1, parts, log=_quiet)
    assert resumed["resumes"] == 2
    assert _comparable(resumed) == _comparable(full)
    _same_models(tmp_path / "a" / "model.pt", parts / "model.pt")


def test_sigkill_mid_run_then_rerun_matches_uninterrupted(tmp_path: Path) -> None:
    data = write_prepared(tmp_path / "big.h5", dim=4, sizes=(2400, 300, 300), seed=3)
    params = tmp_path / "uci.yaml"
    text = QUICK.read_text().replace("max_epochs: 8", "max_epochs: 10")
    text = text.replace("train_subset: 20000", "train_subset: null")
    text = text.replace("keep_checkpoint: false", "keep_checkpoint: true")
    params.write_text(text)
    assert "max_epochs: 10" in text and "keep_checkpoint: true" in text

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "bnaf", "uci", "train", "--params", str(params), "--data",
                str(data), "--dataset", "toy", "--config", "L1_H4", "--seed", "2",
                "--out", str(out), "--device", "cpu", "--threads", "1"]  # fmt: skip

    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    subprocess.run(command(tmp_path / "a"), check=True, capture_output=True, env=env)
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(command(tmp_path / "b"), stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and "epoch    3/" not in (tmp_path / "killed.log").read_text():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "metrics.json").exists(), "finished before it could be killed"
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    rerun = subprocess.run(command(tmp_path / "b"), check=True, capture_output=True, env=env)
    assert b"resumed from" in rerun.stdout
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["resumes"] == 1 and _comparable(a) == _comparable(b)
    _same_models(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


def test_reload_at_decay_restores_the_best_learning_rate(tmp_path: Path, data: Path, monkeypatch):
    # Scripted validation: best at epoch 1, then worse. patience 1, cooldown 0: decays at
    # epochs 3, 5, 7. The authors' reload restores the optimiser state of epoch 1 (lr 1e-2)
    # before each halving, so the rate stays at 5e-3; without the reload it keeps halving.
    script = iter([-1.0] + [-2.0] * 20)
    monkeypatch.setattr(bnaf.uci.trainer.Trainer, "validate", lambda self: (v := next(script), v))
    lrs = {}
    for reload in (True, False):
        script = iter([-1.0] + [-2.0] * 20)
        p = _params(max_epochs=7, patience=1, cooldown=0, reload_best_on_decay=reload)
        m = train_run(p, data, "toy", "L1_H4", 0, tmp_path / str(reload), log=_quiet)
        lrs[reload] = [h["lr"] for h in m["history"]]
        assert [h["epoch"] for h in m["history"] if h["decay"]] == [3, 5, 7]
    assert lrs[True] == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 5e-3])
    assert lrs[False] == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3])


def test_nonfinite_loss_restores_last_epoch_with_lower_lr(tmp_path: Path, data: Path, monkeypatch):
    calls = {"n": 0}
    real = bnaf.uci.trainer.batch_loss

    def flaky(model, x):
        calls["n"] += 1
        loss = real(model, x)
        # 3 batches per epoch: call 5 is in epoch 2, call 8 in its first retry.
        return loss * float("nan") if calls["n"] in (5, 8) else loss

    monkeypatch.setattr(bnaf.uci.trainer, "batch_loss", flaky)
    lines: list[str] = []
    m = train_run(_params(max_epochs=4), data, "toy", "L1_H4", 0, tmp_path / "r", log=lines.append)
    said = [line for line in lines if "non-finite" in line]
    assert len(said) == 2 and all("in epoch 2:" in line for line in said)
    assert m["nonfinite_events"] == [
        {"epoch": 2, "attempt": 1, "lr_after": pytest.approx(5e-3)},
        {"epoch": 2, "attempt": 2, "lr_after": pytest.approx(2.5e-3)},
    ]
    assert [h["lr"] for h in m["history"]] == pytest.approx([1e-2, 2.5e-3, 2.5e-3, 2.5e-3])
    assert all(math.isfinite(h["train_nll"]) for h in m["history"])
    json.loads((tmp_path / "r" / "metrics.json").read_text(), parse_constant=pytest.fail)


def test_persistent_nonfinite_loss_fails_clearly(tmp_path: Path, data: Path, monkeypatch):
    monkeypatch.setattr(
        bnaf.uci.trainer, "batch_loss", lambda model, x: model.log_prob(x).mean() * math.nan
    )
    p = _params(max_epochs=4, nonfinite_retries=2, keep_checkpoint=True)
    lines: list[str] = []
    # Each retry halves the rate again: 1e-2 fails, then 5e-3, then 2.5e-3, then give up.
    with pytest.raises(BnafError, match=r"epoch 1 after 2 retries .*\(last lr 0\.0025\)"):
        train_run(p, data, "toy", "L1_H4", 0, tmp_path / "r", log=lines.append)
    assert [line.split("lr -> ")[1] for line in lines if "non-finite" in line] == [
        "0.005",
        "0.0025",
    ]
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "r"
    train_run(_params(keep_checkpoint=True), data, "toy", "L1_H4", 0, out, stop_after_epochs=2,
              log=_quiet)  # fmt: skip
    lines = []
    m = train_run(_params(max_epochs=3, lr=0.02), data, "toy", "L1_H4", 0, out, log=lines.append)
    assert any("starting afresh" in line for line in lines) and m["resumes"] == 0
    assert list(out.glob("checkpoint.*.stale.pt")), "the old checkpoint is kept beside"


def test_bad_inputs_give_one_line_errors(tmp_path: Path, data: Path, capsys) -> None:
    args = [
        "uci",
        "train",
        "--params",
        str(QUICK),
        "--dataset",
        "toy",
        "--seed",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "--data", str(tmp_path / "missing.h5"), "--config", "L1_H4"]) == 2
    assert "prepared data file not found" in capsys.readouterr().err
    assert main([*args, "--data", str(data), "--config", "big"]) == 2
    assert "bad config name 'big'" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    import h5py

    with h5py.File(bad, "w") as f:
        f.create_dataset("train", data=torch.zeros(3, 2).numpy())
    assert main([*args, "--data", str(bad), "--config", "L1_H4"]) == 2
    assert "missing dataset(s) validation, test" in capsys.readouterr().err


def test_train_subset_is_fixed_and_sized() -> None:
    x = torch.arange(100.0)[:, None]
    assert torch.equal(subset(x, None), x)
    a, b = subset(x, 30), subset(x, 0.3)
    assert len(a) == len(b) == 30 and torch.equal(a, b)  # same rows for every seed and config
    assert len(subset(x, 1000)) == 100  # a count above the split's size: the whole split
    assert len(torch.unique(a)) == 30
    for bad in (0, 1.5, 0.0):
        with pytest.raises(BnafError, match="train_subset"):
            subset(x, bad)
