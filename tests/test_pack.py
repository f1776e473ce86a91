"""Packed toy training (:mod:`bnaf.toy.pack`): runs trained side by side are their separate runs.

A pack stacks the runs of one shape (the three Glow targets of Figure 2, the four planar
energies of Figure 3) and steps them through the same kernels; everything per run must stay per
run. In float64 each member's losses, learning rates (the plateau schedule decays several
times), weights and test numbers must equal those of the run trained alone; a killed pack must
resume bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from bnaf.core.errors import BnafError
from bnaf.toy.params import load_toy
from bnaf.toy.train import train_pack, train_run

ROOT = Path(__file__).resolve().parents[1]
PACKS = [
    ("density", "glow", ["8gaussians", "2spirals", "checkerboard"]),
    ("energy", "planar", ["U1", "U2", "U3", "U4"]),
]
QUIET = {"log": lambda _: None}


def _params(iterations: int = 120, **top) -> object:
    p = load_toy(ROOT / "params" / "quick" / "toy.yaml")
    for k, v in {"checkpoint_every": 10, "log_every": 15, "keep_checkpoint": False, **top}.items():
        setattr(p, k, v)
    p.density.test_samples, p.density.grid_step = 500, 0.5
    p.energy.kl_samples, p.energy.grid_step = 500, 0.5
    p.density.glow.depth = 4
    p.energy.planar.flows = 8
    for opt in (p.density.glow.optimiser, p.energy.planar.optimiser):
        # the plateau schedule decays several times within the steps compared, at a pace
        # that differs between members (their losses differ)
        opt.iterations, opt.patience, opt.threshold, opt.min_lr = iterations, 4, 0.01, 0.0
    return p


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize(("kind", "model", "targets"), PACKS)
def test_pack_members_equal_their_separate_runs(
    kind: str, model: str, targets: list[str], tmp_path: Path
) -> None:
    outs = [tmp_path / "pack" / t for t in targets]
    packed = train_pack(_params(), kind, targets, model, outs, **QUIET)
    decays = 0
    for target, out, got in zip(targets, outs, packed):
        alone = train_run(_params(), kind, target, model, tmp_path / "alone" / target, **QUIET)
        assert got["target"] == target and got["pack"] == targets
        assert len(got["history"]) == len(alone["history"]) == 8
        for a, b in zip(got["history"], alone["history"]):
            assert a["iteration"] == b["iteration"] and a["lr"] == b["lr"]
            assert a["loss"] == pytest.approx(b["loss"], rel=0, abs=1e-10)
        decays += got["history"][-1]["lr"] < got["history"][0]["lr"]
        for name, w in _weights(tmp_path / "alone" / target).items():
            torch.testing.assert_close(_weights(out)[name], w, rtol=0, atol=1e-10)
        for key, value in alone["test"].items():
            assert got["test"][key] == pytest.approx(value, rel=0, abs=1e-9), key
    assert decays == len(targets)  # every member's schedule acted: per-member lr was checked
    lrs = {tuple(r["lr"] for r in m["history"]) for m in packed}
    assert len(lrs) > 1  # and the members' schedules did not move in step


@pytest.mark.float32
@pytest.mark.parametrize(("kind", "model", "targets"), PACKS)
def test_killed_pack_resumes_bit_for_bit(
    kind: str, model: str, targets: list[str], tmp_path: Path
) -> None:
    p = _params(iterations=40)
    whole = train_pack(p, kind, targets, model, [tmp_path / "a" / t for t in targets], **QUIET)
    outs = [tmp_path / "b" / t for t in targets]
    started = time.perf_counter()
    assert train_pack(p, kind, targets, model, outs, stop_after=25, **QUIET) is None
    first = time.perf_counter() - started
    # each checkpoint (at iteration 20) holds the training time of the run so far
    saved = [torch.load(o / "checkpoint.pt", weights_only=True)["state"]["train_s"] for o in outs]
    assert all(0 < s <= first for s in saved)
    lines: list[str] = []
    parts = train_pack(p, kind, targets, model, outs, log=lines.append)
    assert any("at iteration 20" in line for line in lines)
    for a, b, s in zip(whole, parts, saved):
        assert b["resumes"] == 1
        assert a["test"] == b["test"] and a["history"] == b["history"]
        assert b["train_s"] > s  # the time before the kill counts, and more was added


@pytest.mark.float32
def test_pack_with_checkpoints_at_different_iterations_starts_afresh(tmp_path: Path) -> None:
    # a pack killed between two members' saves: the members cannot continue together
    kind, model, targets = PACKS[1]
    p = _params(iterations=40)
    outs = [tmp_path / t for t in targets]
    assert train_pack(p, kind, targets, model, outs, stop_after=25, **QUIET) is None
    (outs[0] / "checkpoint.pt").unlink()
    lines: list[str] = []
    done = train_pack(p, kind, targets, model, outs, log=lines.append)
    assert any("starting afresh" in line for line in lines)
    assert all(m["resumes"] == 0 for m in done)
    whole = train_pack(p, kind, targets, model, [tmp_path / "w" / t for t in targets], **QUIET)
    assert [m["test"] for m in done] == [m["test"] for m in whole]


@pytest.mark.float32
def test_a_checkpoint_of_the_run_alone_is_not_resumed_in_a_pack(tmp_path: Path) -> None:
    kind, model, targets = PACKS[1]
    p = _params(iterations=40)
    outs = [tmp_path / t for t in targets]
    assert train_run(p, kind, targets[0], model, outs[0], stop_after=25, **QUIET) is None
    lines: list[str] = []
    done = train_pack(p, kind, targets, model, outs, log=lines.append)
    assert all(m["resumes"] == 0 for m in done)
    assert list(outs[0].glob("checkpoint.*.stale.pt"))  # kept beside, as any other run's


def test_pack_refuses_what_it_cannot_train(tmp_path: Path) -> None:
    p = _params(iterations=5)
    with pytest.raises(BnafError, match="one --out per distinct --target"):
        train_pack(p, "energy", ["U1", "U2"], "planar", [tmp_path / "a"], **QUIET)
    with pytest.raises(BnafError, match="one --out per distinct --target"):
        train_pack(p, "energy", ["U1", "U1"], "planar", [tmp_path / "a", tmp_path / "b"], **QUIET)
    with pytest.raises(BnafError, match="bnaf runs train one at a time"):
        train_pack(p, "energy", ["U1", "U2"], "bnaf", [tmp_path / "a", tmp_path / "b"], **QUIET)


@pytest.mark.float32
def test_each_logged_loss_is_the_mean_of_its_members_steps_since_the_last_row(
    tmp_path: Path, monkeypatch
) -> None:
    """A history row holds, per member, the mean of that member's step losses since the row
    before: 45 steps logged every 10 give rows at 10, 20, 30, 40 and a last one of 5 steps."""
    import bnaf.toy.fit

    steps: list[list[float]] = []
    real = bnaf.toy.fit.train_step

    def recorded(*args, **kwargs) -> list[float]:
        steps.append(real(*args, **kwargs))
        return steps[-1]

    monkeypatch.setattr(bnaf.toy.fit, "train_step", recorded)
    kind, model, targets = PACKS[1]
    p = _params(iterations=45, log_every=10)
    packed = train_pack(p, kind, targets, model, [tmp_path / t for t in targets], **QUIET)
    assert len(steps) == 45
    bounds = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 45)]
    for i, run in enumerate(packed):
        assert [row["iteration"] for row in run["history"]] == [b for _, b in bounds]
        for row, (a, b) in zip(run["history"], bounds):
            mean = sum(s[i] for s in steps[a:b]) / (b - a)
            assert row["loss"] == pytest.approx(mean, rel=1e-12), (i, b)
    assert len({run["history"][0]["loss"] for run in packed}) == len(targets)


def test_the_loops_lines_go_to_the_runs_log_and_nowhere_else(tmp_path: Path, capsys) -> None:
    """Snakemake keeps a run's log from what the run logs: every line of the loop (one per
    logged iteration and member) goes to the ``log`` given, none straight to the terminal;
    the training time it shows is a duration within the run."""
    lines: list[str] = []
    kind, model, targets = PACKS[1]
    p = _params(iterations=30, log_every=10)
    outs = [tmp_path / t for t in targets[:2]]
    started = time.perf_counter()
    runs = train_pack(p, kind, targets[:2], model, outs, log=lines.append)
    took = time.perf_counter() - started
    assert capsys.readouterr().out == ""
    rows = [line.split() for line in lines if line.startswith("iter ")]
    assert [row[1] for row in rows] == ["10", "10", "20", "20", "30", "30"]
    for row in rows:  # iter N  loss L  lr R  Ts  target
        assert row[6].endswith("s") and 0 <= float(row[6][:-1]) <= took + 1
    assert all(0 < run["train_s"] <= took for run in runs)


def test_a_diverging_member_stops_the_pack_naming_it_before_any_step(
    tmp_path: Path, monkeypatch
) -> None:
    """A member whose loss turns non-finite stops the pack with one line naming the run and
    the iteration; that step is not taken (the last checkpoint holds the weights before it),
    and no run writes results."""
    import bnaf.toy.train

    real = bnaf.toy.train.pack_loss

    def poisoned(*args, **kwargs):
        loss_fn = real(*args, **kwargs)

        def losses(step: int) -> torch.Tensor:
            out = loss_fn(step)
            if step == 12:  # member 1 only, after the checkpoint of iteration 10
                return out * torch.tensor([1.0, float("nan"), 1.0, 1.0], dtype=out.dtype)
            return out

        return losses

    monkeypatch.setattr(bnaf.toy.train, "pack_loss", poisoned)
    kind, model, targets = PACKS[1]
    outs = [tmp_path / t for t in targets]
    with pytest.raises(BnafError, match=r"^energy U2 planar: training diverged at iteration 12 "
                                        r"\(loss nan\)$"):  # fmt: skip
        train_pack(_params(iterations=20), kind, targets, model, outs, **QUIET)
    assert not any((o / "metrics.json").exists() for o in outs)
    saved = torch.load(outs[0] / "checkpoint.pt", weights_only=True)["state"]
    assert saved["step"] == 10
