"""The checkpoint discipline (bnaf.core.checkpoint) and its use by the UCI trainer: a run
resumes only when everything that shapes its result is unchanged; otherwise, or when the
checkpoint is unreadable, the old file is set aside and the run starts afresh; leftovers of
killed writes are cleaned; one job per run folder."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from uci_synthetic import write_prepared

from bnaf.core import checkpoint as ck
from bnaf.core.errors import BnafError
from bnaf.toy.params import load_toy
from bnaf.toy.train import train_run as train_toy
from bnaf.uci.params import load_uci
from bnaf.uci.train import train_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]


def test_rng_state_round_trips_every_stream() -> None:
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = ck.rng_state(g)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    torch.manual_seed(9), np.random.seed(9), random.seed(9), g.manual_seed(9)
    ck.set_rng_state(state, g)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    torch.testing.assert_close(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
    torch.testing.assert_close(first[3], again[3])


def test_checkpoint_is_plain_data_readable_without_code(tmp_path: Path) -> None:
    c = ck.Checkpoint(tmp_path, "key", log=lambda _: None)
    c.save({"rng": ck.rng_state(torch.Generator()), "w": torch.ones(2)}, wall_s=1.0)
    blob = torch.load(c.path, weights_only=True)  # would raise on any pickled object
    assert blob["fingerprint"] == "key" and blob["wall_s"] == 1.0


def test_other_fingerprint_is_set_aside_and_not_resumed(tmp_path: Path) -> None:
    lines: list[str] = []
    ck.Checkpoint(tmp_path, "old", lines.append).save({"epoch": 3})
    assert ck.Checkpoint(tmp_path, "new", lines.append).load() is None
    assert not (tmp_path / "checkpoint.pt").exists()
    assert len(list(tmp_path.glob("checkpoint.old*.stale.pt"))) == 1
    assert any("starting afresh" in line for line in lines)


def test_unreadable_checkpoint_is_kept_as_corrupt(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x04truncated")
    lines: list[str] = []
    assert ck.Checkpoint(tmp_path, "k", lines.append).load() is None
    assert (tmp_path / "checkpoint.pt.corrupt").read_bytes() == b"\x80\x04truncated"
    assert "unreadable" in lines[0]


def test_leftovers_of_killed_writes_are_removed(tmp_path: Path) -> None:
    left = tmp_path / ".checkpoint.pt.abc123.tmp"
    left.write_bytes(b"half a checkpoint")
    ck.Checkpoint(tmp_path, "k", lambda _: None).load()
    assert not left.exists()


def test_a_second_job_on_a_run_folder_is_refused(tmp_path: Path) -> None:
    with ck.run_lock(tmp_path):
        with pytest.raises(BnafError, match="another job"):
            with ck.run_lock(tmp_path):
                pass
    with ck.run_lock(tmp_path):  # released when the first job ends
        pass


def test_code_closure_follows_imports() -> None:
    files = {p.name for p in ck.code_closure("bnaf.uci.train")}
    assert {"train.py", "trainer.py", "layers.py", "logjac.py", "optim.py"} <= files
    assert "report.py" not in files  # nothing off the training path


def _params(tmp_path: Path, **train) -> object:
    p = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    base = dict(max_epochs=4, train_subset=None, device="cpu", threads=1, keep_checkpoint=False)
    for k, v in {**base, **train}.items():
        setattr(p.train, k, v)
    return p


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_prepared(tmp_path / "toy.h5", dim=2, sizes=(300, 100, 100))


@pytest.mark.parametrize("change", ["param", "data", "seed", "code"])
def test_uci_run_starts_afresh_when_what_shapes_it_changed(
    change: str, tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    train_run(_params(tmp_path), data, "toy", "L1_H2", 0, out, stop_after_epochs=2,
              log=lambda _: None)  # fmt: skip
    params, seed = _params(tmp_path), 0
    if change == "param":
        params = _params(tmp_path, lr=0.02)
    elif change == "data":
        data = write_prepared(tmp_path / "other.h5", dim=2, sizes=(300, 100, 100), seed=1)
    elif change == "seed":
        seed = 1
    else:  # an edit of a module on the training path
        edited = tmp_path / "edited.py"
        edited.write_text("# an edited module\n")
        real = ck.code_closure
        monkeypatch.setattr(ck, "code_closure", lambda *m: [*real(*m), edited])
    lines: list[str] = []
    m = train_run(params, data, "toy", "L1_H2", seed, out, log=lines.append)
    assert m["resumes"] == 0 and any("starting afresh" in line for line in lines)


def test_uci_run_resumes_when_nothing_changed_and_ends_as_uninterrupted(
    tmp_path: Path, data: Path
) -> None:
    whole = train_run(_params(tmp_path), data, "toy", "L1_H2", 0, tmp_path / "a",
                      log=lambda _: None)  # fmt: skip
    train_run(_params(tmp_path), data, "toy", "L1_H2", 0, tmp_path / "b", stop_after_epochs=2,
              log=lambda _: None)  # fmt: skip
    lines: list[str] = []
    parts = train_run(_params(tmp_path), data, "toy", "L1_H2", 0, tmp_path / "b",
                      log=lines.append)  # fmt: skip
    assert parts["resumes"] == 1 and any("resumed" in line for line in lines)
    assert parts["test"] == whole["test"] and parts["validation"] == whole["validation"]
    assert not (tmp_path / "b" / "checkpoint.pt").exists()  # a finished run removes it


def test_checkpoint_every_n_epochs_resumes_from_the_last_one_written(
    tmp_path: Path, data: Path
) -> None:
    whole = train_run(_params(tmp_path, max_epochs=5), data, "toy", "L1_H2", 0, tmp_path / "a",
                      log=lambda _: None)  # fmt: skip
    every3 = _params(tmp_path, max_epochs=5, checkpoint_every=3)
    out = tmp_path / "b"
    train_run(every3, data, "toy", "L1_H2", 0, out, stop_after_epochs=4, log=lambda _: None)
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["state"]["epoch"] == 3  # epoch 4 was not written: it is redone on resume
    parts = train_run(every3, data, "toy", "L1_H2", 0, out, log=lambda _: None)
    assert parts["resumes"] == 1 and parts["test"] == whole["test"]


def test_checkpoints_are_read_onto_the_cpu_without_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GPU bug this guards: a checkpoint loaded with map_location=<the training device>
    # moved the saved RNG states there, and torch refuses to restore a state from a device.
    seen: dict = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    c = ck.Checkpoint(tmp_path, "k", lambda _: None)
    c.save({"rng": ck.rng_state(torch.Generator())})
    monkeypatch.setattr(torch, "load", spy)
    blob = c.load()
    assert seen["map_location"] == "cpu" and seen["weights_only"] is True
    assert blob["state"]["rng"]["torch"].device.type == "cpu"
    ck.set_rng_state(blob["state"]["rng"], torch.Generator())


# --------------------------------------------------------------------- the toy trainer
TOY_RUNS = [
    ("density", "8gaussians", "bnaf"),
    ("density", "8gaussians", "glow"),
    ("energy", "U1", "bnaf"),
    ("energy", "U1", "planar"),
]


def _toy(**top) -> object:
    p = load_toy(ROOT / "params" / "quick" / "toy.yaml")
    # a history row every 15 steps: checkpoints (every 10) fall inside a row's window
    for k, v in {"checkpoint_every": 10, "log_every": 15, "keep_checkpoint": False, **top}.items():
        setattr(p, k, v)
    p.density.test_samples, p.density.grid_step = 500, 0.5
    p.energy.kl_samples, p.energy.grid_step = 500, 0.5
    for exp, models in ((p.density, ("bnaf", "glow")), (p.energy, ("bnaf", "planar"))):
        for model in models:
            opt = getattr(exp, model).optimiser
            # the plateau schedule acts within 40 steps: its state matters on resume
            opt.iterations, opt.patience, opt.threshold, opt.min_lr = 40, 3, 10.0, 0.0
    return p


def _quiet(*args, **kwargs):
    return train_toy(*args, **kwargs, log=lambda _: None)


@pytest.mark.parametrize(("kind", "target", "model"), TOY_RUNS)
def test_toy_run_resumes_and_ends_as_uninterrupted(
    kind: str, target: str, model: str, tmp_path: Path
) -> None:
    whole = _quiet(_toy(), kind, target, model, tmp_path / "a")
    # 25 steps: the checkpoint of step 20 holds the run, steps 21-25 are redone on resume
    assert _quiet(_toy(), kind, target, model, tmp_path / "b", stop_after=25) is None
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state"]["step"] == 20
    lines: list[str] = []
    parts = train_toy(_toy(), kind, target, model, tmp_path / "b", log=lines.append)
    assert parts["resumes"] == 1 and any("at iteration 20" in line for line in lines)
    # the evaluation draws its own samples: equal numbers mean equal weights, bit for bit
    assert parts["test"] == whole["test"] and parts["history"] == whole["history"]
    assert not (tmp_path / "b" / "checkpoint.pt").exists()  # a finished run removes it


@pytest.mark.parametrize("change", ["param", "seed", "code"])
def test_toy_run_starts_afresh_when_what_shapes_it_changed(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    _quiet(_toy(), "density", "8gaussians", "bnaf", out, stop_after=15)
    params = _toy(seed=1) if change == "seed" else _toy()
    if change == "param":
        params.density.bnaf.optimiser.lr = 0.05
    elif change == "code":
        edited = tmp_path / "edited.py"
        edited.write_text("# an edited module\n")
        real = ck.code_closure
        monkeypatch.setattr(ck, "code_closure", lambda *m: [*real(*m), edited])
    lines: list[str] = []
    m = train_toy(params, "density", "8gaussians", "bnaf", out, log=lines.append)
    assert m["resumes"] == 0 and any("starting afresh" in line for line in lines)
    assert len(list(out.glob("checkpoint.*.stale.pt"))) == 1


@pytest.mark.threads
def test_toy_run_ignores_what_does_not_shape_training(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _quiet(_toy(), "density", "8gaussians", "bnaf", out, stop_after=15)
    lines: list[str] = []
    m = train_toy(_toy(threads=2, checkpoint_every=7, keep_checkpoint=True), "density",
                  "8gaussians", "bnaf", out, log=lines.append)  # fmt: skip
    assert m["resumes"] == 1, lines
    assert (out / "checkpoint.pt").exists()  # keep_checkpoint
