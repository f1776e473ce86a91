"""Stage ``vae``: a run on fixture data writes self-describing results and resumes after a kill."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.io import savemat

from bnaf.cli import main
from bnaf.core.checkpoint import Checkpoint
from bnaf.core.history import read_history
from bnaf.data.images import FILES

# The pipeline trains in float32 (HDF5 splits are float32): test it as it runs.
pytestmark = pytest.mark.float32

QUICK = Path(__file__).resolve().parents[1] / "params" / "quick" / "vae.yaml"


def tiny_params(path: Path, **changes) -> Path:
    params = yaml.safe_load(QUICK.read_text())
    params["vae"].update(
        datasets=["freyfaces"], grid_dataset="freyfaces", grid=[{"flows": 2, "hidden_factor": 1}],
        best={"flows": 2, "hidden_factor": 1}, seeds=[1], latent=8, max_epochs=3,
        warmup_epochs=2, train_subset=None, valid_subset=None, test_subset=None,
        check_sizes=False, nll_samples={"freyfaces": 4}, batch_size=10,
    )  # fmt: skip
    params["vae"].update(changes)
    path.write_text(yaml.safe_dump(params))
    return path


def frey_status(root: Path, n: int = 40) -> Path:
    mat = root / "frey_rawface.mat"
    ff = np.random.default_rng(0).integers(0, 256, (560, n)).astype(np.uint8)
    savemat(mat, {"ff": ff})
    status = root / "freyfaces.status.json"
    status.write_text(
        json.dumps(
            {
                "dataset": "freyfaces",
                "available": True,
                "paths": {FILES["freyfaces"][0].name: str(mat)},
            }
        )
    )
    return status


def args(params: Path, status: Path, out: Path) -> list[str]:
    return ["vae", "train", "--params", str(params), "--dataset", "freyfaces", "--config",
            "bnaf-K2-H1d", "--seed", "1", "--status", str(status), "--out", str(out)]  # fmt: skip


def _killed_after_first_checkpoint(params: Path, status: Path, out: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bnaf", *args(params, status, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_run_writes_metrics_and_resumes_identically(tmp_path):
    params, status = tiny_params(tmp_path / "vae.yaml"), frey_status(tmp_path)
    assert main(args(params, status, tmp_path / "straight")) == 0
    ref = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert ref["unit"] == "bits/dim" and ref["epochs_run"] == 3 and ref["sizes"]["train"] == 32
    assert ref["test_nll"] == pytest.approx(ref["test_nll_nats"] / (560 * np.log(2)))
    assert ref["parameters"]["values_predicted_per_datapoint"] == 2 * 2 * (3 * 8)
    assert (tmp_path / "straight" / "model.pt").is_file()
    curves = read_history(tmp_path / "straight" / "history.csv")
    assert curves["valid"] == [h["valid"] for h in ref["history"]] and len(curves["valid"]) == 3

    # kill a second run once its first epoch is checkpointed, then restart it
    out = tmp_path / "killed"
    _killed_after_first_checkpoint(params, status, out)
    assert not (out / "metrics.json").exists()
    assert main(args(params, status, out)) == 0
    got = json.loads((out / "metrics.json").read_text())
    assert [h["valid"] for h in got["history"]] == [h["valid"] for h in ref["history"]]
    for key in ("test_neg_elbo", "test_nll", "valid_neg_elbo", "best_epoch"):
        assert got[key] == ref[key], key


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Stop(Exception):
    pass


def test_on_a_terminal_the_bar_counts_the_runs_epochs(tmp_path, monkeypatch):
    """The bar is named after the run and counts epochs of ``max_epochs`` (3), from where a
    resumed run stands: a run stopped after its first checkpoint, then the same command."""
    params, status, out = tiny_params(tmp_path / "vae.yaml"), frey_status(tmp_path), tmp_path / "r"
    save = Checkpoint.save

    def save_then_stop(self, *a, **kw):
        save(self, *a, **kw)
        raise _Stop

    for stopped, (first, last) in ((True, (0, 0)), (False, (1, 3))):
        screen = _Terminal()
        monkeypatch.setattr("sys.stderr", screen)
        monkeypatch.setattr(Checkpoint, "save", save_then_stop if stopped else save)
        if stopped:
            with pytest.raises(_Stop):
                main(args(params, status, out))
        else:
            assert main(args(params, status, out)) == 0
        frames = [f for f in re.split(r"[\r\n]", screen.getvalue()) if f.strip()]
        assert frames and all(f.startswith("freyfaces bnaf-K2-H1d seed 1:") for f in frames)
        counts = [re.search(r"(\d+)/3 ", f) for f in frames]
        assert all(counts), frames
        assert (int(counts[0].group(1)), int(counts[-1].group(1))) == (first, last), frames
        assert all("epoch/s" in f or "s/epoch" in f for f in frames[1:]), frames


@pytest.mark.parametrize("check", [True, False])
def test_the_published_split_sizes_are_checked_when_the_params_say_so(tmp_path, capsys, check):
    """``check_sizes: true`` (both budgets) refuses a Frey faces file that is not the published
    1,965 images, before any training; ``false`` (fixtures) trains on what is there."""
    params = tiny_params(tmp_path / "vae.yaml", check_sizes=check, max_epochs=1)
    out = tmp_path / "o"
    code = main(args(params, frey_status(tmp_path), out))
    err = capsys.readouterr().err.strip().splitlines()
    if check:
        assert code == 2 and len(err) == 1 and "expected 1965 images, got 40" in err[0]
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no checkpoint, no metrics
    else:
        assert code == 0 and (out / "metrics.json").is_file()


def test_unavailable_dataset_is_one_clear_error(tmp_path, capsys):
    params = tiny_params(tmp_path / "vae.yaml")
    status = tmp_path / "s.json"
    status.write_text(
        json.dumps({"dataset": "freyfaces", "available": False, "reason": "offline"})
    )
    assert main(args(params, status, tmp_path / "o")) == 2
    assert "not available: offline" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["lr", "seed"])
def test_checkpoint_of_other_params_or_seed_is_set_aside(tmp_path, change, capsys):
    status = frey_status(tmp_path)
    first = tiny_params(tmp_path / "a.yaml")
    out = tmp_path / "run"
    _killed_after_first_checkpoint(first, status, out)
    assert (out / "checkpoint.pt").is_file()
    second = tiny_params(tmp_path / "b.yaml", lr=0.001) if change == "lr" else first
    argv = args(second, status, out)
    if change == "seed":
        argv[argv.index("--seed") + 1] = "2"
    assert main(argv) == 0
    assert list(out.glob("checkpoint.*.stale.pt")), "the old checkpoint is kept beside the run"
    assert "starting afresh" in capsys.readouterr().out
    clean_argv = [*argv[: argv.index("--out")], "--out", str(tmp_path / "clean")]
    assert main(clean_argv) == 0
    got = json.loads((out / "metrics.json").read_text())
    ref = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    for key in ("test_neg_elbo", "test_nll", "valid_neg_elbo", "best_epoch"):
        assert got[key] == ref[key], key  # a fresh start: the new params' own result


@pytest.mark.parametrize(
    "epoch, warmup, max_beta, beta",
    [(1, 10, 1.0, 0.1), (5, 10, 1.0, 0.5), (10, 10, 1.0, 1.0), (30, 10, 1.0, 1.0),
     (3, 10, 0.2, 0.2), (1, 1, 1.0, 1.0), (1, 2, 1.0, 0.5), (1, 0, 1.0, 1.0), (4, 0, 0.5, 0.5)],
)  # fmt: skip
def test_the_kl_weight_warms_up_linearly_to_its_cap(epoch, warmup, max_beta, beta):
    """beta = min(epoch / warmup, max_beta) (the Sylvester code's annealing; no warm-up when
    ``warmup`` is 0)."""
    from bnaf.vae.train import warmup_beta

    assert warmup_beta(epoch, warmup, max_beta) == pytest.approx(beta, abs=1e-12)


def test_evaluation_settings_stay_out_of_the_resume_key(tmp_path, monkeypatch):
    """A checkpoint stays valid when only how the run is evaluated (or where its resources come
    from) changes, and is set aside when anything that changes training does."""
    import argparse
    import dataclasses

    import torch

    from bnaf.vae.params import load_vae
    from bnaf.vae.train import run_fingerprint

    params = load_vae(tiny_params(tmp_path / "p.yaml"))
    ns = argparse.Namespace(dataset="freyfaces", config="bnaf-K2-H1d", seed=1)
    x = {"train": torch.zeros(4, 3), "valid": torch.ones(2, 3)}
    cpu = torch.device("cpu")
    base = run_fingerprint(params, ns, x, cpu)
    resources = dataclasses.replace(params.resources, threads=params.resources.threads + 1)
    same = dict(nll_samples={"freyfaces": 9}, nll_chunk=3, eval_batch=7, test_subset=5,
                device="cuda", resources=resources)  # fmt: skip
    for key, value in same.items():
        changed = dataclasses.replace(params, **{key: value})
        assert run_fingerprint(changed, ns, x, cpu) == base, key
    other = dict(lr=params.lr * 2, batch_size=params.batch_size + 1, max_beta=0.5,
                 warmup_epochs=params.warmup_epochs + 1, max_epochs=params.max_epochs + 1,
                 early_stopping_epochs=params.early_stopping_epochs + 1, latent=4,
                 adamax_eps=1e-3, train_subset=30, valid_subset=9)  # fmt: skip
    for key, value in other.items():
        changed = dataclasses.replace(params, **{key: value})
        assert run_fingerprint(changed, ns, x, cpu) != base, key
    for key, value in dict(dataset="mnist", config="vae", seed=2).items():
        assert (
            run_fingerprint(params, argparse.Namespace(**{**vars(ns), key: value}), x, cpu) != base
        )
    assert run_fingerprint(params, ns, {**x, "valid": torch.zeros(2, 3)}, cpu) != base
    assert run_fingerprint(params, ns, {**x, "train": torch.ones(4, 3)}, cpu) != base
    # another device type, or other numerics on the same one, is another run
    assert run_fingerprint(params, ns, x, torch.device("meta")) != base
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    assert run_fingerprint(params, ns, x, cpu) != base


@pytest.mark.parametrize(
    "text, message",
    [("[1, 2]", "the file is a list, expected an object"),
     ('{"paths": {}}', "missing key 'dataset'"),
     ('{"dataset": "freyfaces", "paths": {}}', "missing key 'available'"),
     ('{"dataset": "freyfaces", "available": "yes"}', "'available' is 'yes', expected true or"),
     ('{"dataset": "mnist", "available": true}', "the status of 'mnist', not of 'freyfaces'"),
     ('{"dataset": "freyfaces", "available": true}', "'paths' must map"),
     ('{"dataset": "freyfaces", "available": true, "paths": []}',
      "'paths' is a list, expected an object"),
     ('{"dataset": "freyfaces", "available": true, "paths": {"a": 1}}',
      "'paths.a' is 1, expected a string")],
)  # fmt: skip
def test_a_malformed_status_is_one_error_line(tmp_path, capsys, text, message):
    params = tiny_params(tmp_path / "vae.yaml")
    status = tmp_path / "s.json"
    status.write_text(text)
    assert main(args(params, status, tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(status) in err[0]
