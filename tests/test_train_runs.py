"""What :func:`bnaf.uci.train.train_runs` does around the trainers: the key a checkpoint must
match to be resumed, where a stop and a resume leave a run, what the log and the progress bar
say, a pack member's failure, and what a finished run leaves on disk.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from uci_synthetic import write_prepared

from bnaf.core.errors import BnafError
from bnaf.flows import load_flow_meta
from bnaf.flows.config import FlowConfig
from bnaf.uci.differences import UCI_DIFFERENCES
from bnaf.uci.params import TrainParams, UciParams, load_uci
from bnaf.uci.train import run_fingerprint, train_run, train_runs
from bnaf.uci.trainer import Trainer

pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"
CPU = torch.device("cpu")
#: the settings that change no number of a run (where and how often it writes, threads)
BOOKKEEPING = {"device", "threads", "keep_checkpoint", "checkpoint_every", "eval_batch_size"}


def _other(value: Any) -> Any:
    """Some other value of the same kind (the key is a digest: any change must show)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 1e-3
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [v / 2 for v in value]
    assert value is None
    return 7


def _splits() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {s: torch.randn(n, 2, generator=g) for s, n in (("train", 6), ("validation", 3))}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(TrainParams)])
def test_a_training_setting_is_in_the_resume_key_unless_it_is_bookkeeping(name: str) -> None:
    p = load_uci(QUICK)
    changed = dataclasses.replace(
        p, train=dataclasses.replace(p.train, **{name: _other(getattr(p.train, name))})
    )
    same = run_fingerprint(p, _splits(), CPU, seed=0) == run_fingerprint(
        changed, _splits(), CPU, seed=0
    )
    assert same == (name in BOOKKEEPING)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(FlowConfig)])
def test_every_flow_setting_is_in_the_resume_key(name: str) -> None:
    p = load_uci(QUICK)
    changed = dataclasses.replace(
        p, flow=dataclasses.replace(p.flow, **{name: _other(getattr(p.flow, name))})
    )
    assert run_fingerprint(p, _splits(), CPU, seed=0) != run_fingerprint(
        changed, _splits(), CPU, seed=0
    )


def test_the_device_the_data_and_the_run_are_in_the_resume_key() -> None:
    p = load_uci(QUICK)
    base = run_fingerprint(p, _splits(), CPU, seed=0)
    assert run_fingerprint(p, _splits(), torch.device("meta"), seed=0) != base
    assert run_fingerprint(p, _splits(), CPU, seed=1) != base
    assert run_fingerprint(p, _splits(), CPU, seed=0, pack=[0, 1]) != base
    moved = _splits()
    moved["validation"][0, 0] += 1e-6
    assert run_fingerprint(p, moved, CPU, seed=0) != base
    assert run_fingerprint(p, _splits(), CPU, seed=0) == base  # and nothing else moves it


# ------------------------------------------------------------------ runs on a small file
@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_prepared(tmp_path / "prepared" / "toy.h5", dim=3, sizes=(300, 100, 100))


def _params(tmp_path: Path, **train: Any) -> UciParams:
    raw = yaml.safe_load(QUICK.read_text())
    raw["uci"]["train"] |= {"max_epochs": 2, "train_subset": None, **train}
    path = tmp_path / "uci.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_uci(path)


def _resumed_at(lines: list[str], folder: Path) -> int | None:
    found = [re.fullmatch(rf"resumed from {re.escape(str(folder / 'checkpoint.pt'))} at epoch "
                          r"(\d+)", line) for line in lines]  # fmt: skip
    epochs = [int(m.group(1)) for m in found if m]
    assert len(epochs) <= 1
    return epochs[0] if epochs else None


def test_a_stop_leaves_the_asked_epochs_and_a_resume_goes_on_from_there(
    tmp_path: Path, data: Path
) -> None:
    """``stop_after_epochs=2`` of a 3-epoch run: the call returns None after exactly two
    epochs; the next call resumes at epoch 2 and finishes; the wall time of both calls is the
    run's, no more."""
    p = _params(tmp_path, max_epochs=3)
    out = tmp_path / "r"
    lines: list[str] = []
    t0 = time.perf_counter()
    stopped = train_run(p, data, "toy", "L1_H4", 0, out, stop_after_epochs=2, log=lines.append)
    assert stopped is None
    first = time.perf_counter() - t0
    assert _resumed_at(lines, out) is None and not (out / "metrics.json").exists()
    lines.clear()
    t0 = time.perf_counter()
    m = train_run(p, data, "toy", "L1_H4", 0, out, log=lines.append)
    second = time.perf_counter() - t0
    assert _resumed_at(lines, out) == 2
    assert m is not None and m["epochs_run"] == 3 and m["resumes"] == 1
    assert second < m["wall_s"] <= first + second


@pytest.mark.parametrize(
    ("dataset", "config", "seed"),
    [("toy", "L1_H4", 0), ("toy", "L1_H4", 1), ("toy", "L2_H4", 0), ("other", "L1_H4", 0)],
)
def test_a_checkpoint_is_resumed_only_by_its_own_run(
    tmp_path: Path, data: Path, dataset: str, config: str, seed: int
) -> None:
    """A run folder copied elsewhere: the same (dataset, config, seed) resumes it; another
    seed, config or dataset name sets it aside and starts afresh, as does a separate run
    given a pack member's checkpoint (a pack's rounding is not a separate run's)."""
    p = _params(tmp_path, max_epochs=3)
    first = tmp_path / "first"
    assert train_run(p, data, "toy", "L1_H4", 0, first, stop_after_epochs=1,
                     log=lambda _: None) is None  # fmt: skip
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    lines: list[str] = []
    train_run(p, data, dataset, config, seed, copy, stop_after_epochs=1, log=lines.append)
    own = (dataset, config, seed) == ("toy", "L1_H4", 0)
    assert _resumed_at(lines, copy) == (1 if own else None)
    assert any("was written for other params, data, seed or code" in s for s in lines) != own


def test_a_pack_members_checkpoint_is_not_a_separate_runs(tmp_path: Path, data: Path) -> None:
    p = _params(tmp_path, max_epochs=3)
    outs = [tmp_path / "pack" / f"seed{s}" for s in (0, 1)]
    assert train_runs(p, data, "toy", "L1_H4", [0, 1], outs, stop_after_epochs=1,
                      log=lambda _: None) is None  # fmt: skip
    lines: list[str] = []
    train_runs(p, data, "toy", "L1_H4", [0, 1], outs, stop_after_epochs=1, log=lines.append)
    assert [_resumed_at(lines, o) for o in outs] == [1, 1]  # the same pack resumes
    lines.clear()
    train_run(p, data, "toy", "L1_H4", 0, outs[0], stop_after_epochs=1, log=lines.append)
    assert _resumed_at(lines, outs[0]) is None


# ------------------------------------------------------------------------------ the log
def _epoch_line(h: dict[str, Any], max_epochs: int, prefix: str = "") -> str:
    val = "nan" if h["validation_ll"] is None else f"{h['validation_ll']:.4f}"
    return (
        f"{prefix}epoch {h['epoch']:4d}/{max_epochs} train_nll {h['train_nll']:.4f} "
        f"val_ll {val} lr {h['lr']:.2e} samples/s {h['samples_per_s']:.0f}"
        + (" best" if h["best"] else "")
        + (" decay" if h["decay"] else "")
    )


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_the_log_says_what_each_epoch_did(tmp_path: Path, data: Path, seeds: list[int]) -> None:
    """One header line, one line per member and epoch (from the run's own history: the
    improvements and the decays marked), and one closing line per member; a pack's lines name
    their seed. The plateau settings make the third epoch decay."""
    p = _params(tmp_path, max_epochs=3, patience=1, cooldown=0, threshold=1e3)
    outs = [tmp_path / f"seed{s}" for s in seeds]
    lines: list[str] = []
    ms = train_runs(p, data, "toy", "L1_H4", seeds, outs, log=lines.append)
    pack = len(seeds) > 1
    names = " ".join(map(str, seeds))
    assert lines[0] == (
        f"toy L1_H4 seed{'s' if pack else ''} {names}: d=3, train=300, validation=100, "
        "test=100, device=cpu, budget=quick"
    )
    expected = []
    for epoch in range(3):
        for seed, m in zip(seeds, ms):
            expected.append(_epoch_line(m["history"][epoch], 3, f"seed {seed} " if pack else ""))
    assert lines[1 : 1 + len(expected)] == expected
    assert all(m["history"][2]["decay"] and m["history"][0]["best"] for m in ms)
    done = lines[1 + len(expected) :]
    assert len(done) == len(seeds)
    for line, seed, m in zip(done, seeds, ms):
        v, t = m["validation"], m["test"]
        which = rf" \(seed {seed}\)" if pack else ""
        assert re.fullmatch(
            rf"done{which}: best epoch {m['best_epoch']}, "
            rf"validation LL {v['log_likelihood']:.4f} \+- {v['stderr']:.4f}, "
            rf"test LL {t['log_likelihood']:.4f} \+- {t['stderr']:.4f} nats, \d+\.\d s",
            line,
        ), line


def test_an_epoch_without_a_finite_validation_logs_nan(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    validate = Trainer.validate
    calls = []

    def first_nan(self):  # the first epoch's validation is not finite, the others are
        calls.append(1)
        return (float("nan"), float("nan")) if len(calls) == 1 else validate(self)

    monkeypatch.setattr(Trainer, "validate", first_nan)
    lines: list[str] = []
    m = train_run(_params(tmp_path), data, "toy", "L1_H4", 0, tmp_path / "r", log=lines.append)
    assert m["history"][0]["validation_ll"] is None
    assert lines[1] == _epoch_line(m["history"][0], 2) and " val_ll nan lr " in lines[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_counts_the_runs_epochs(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    """The bar is named after the run and counts epochs of ``max_epochs``, from where a
    resumed run stands."""
    p = _params(tmp_path, max_epochs=3)
    for seeds, stop in (([0], 1), ([0], None), ([0, 1], None)):
        screen = _Terminal()
        monkeypatch.setattr("sys.stderr", screen)
        outs = [tmp_path / ("one" if len(seeds) == 1 else f"pack{s}") for s in seeds]
        train_runs(p, data, "toy", "L1_H4", seeds, outs, stop_after_epochs=stop,
                   log=lambda _: None)  # fmt: skip
        frames = [f for f in re.split(r"[\r\n]", screen.getvalue()) if f.strip()]
        name = "toy L1_H4 seeds 0 1" if len(seeds) > 1 else "toy L1_H4 seed 0"
        assert frames and all(f.startswith(name + ":") for f in frames), frames
        counts = [re.search(r"(\d+)/3 ", f) for f in frames]
        assert all(counts), frames
        start = 1 if (seeds, stop) == ([0], None) else 0  # the second call resumes at 1
        assert int(counts[0].group(1)) == start
        assert int(counts[-1].group(1)) == (1 if stop else 3)
        assert all("epoch/s" in f or "s/epoch" in f for f in frames[1:]), frames


# ------------------------------------------------------------------- failures and files
def test_failed_pack_members_are_reported_after_the_others_are_written(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    """Seeds 1 and 2 of a pack of three diverge: seed 0's run is written, then one error
    line names each failed seed with its reason."""
    init = Trainer.__init__

    def diverges(self, train, validation, flow, seed, *rest, **kw):
        init(self, train, validation, flow, seed, *rest, **kw)
        if seed > 0:  # its weights are infinite from the start: every retry fails
            with torch.no_grad():
                self.model.transforms[0].linears[0].bias.fill_(float("inf"))

    monkeypatch.setattr(Trainer, "__init__", diverges)
    outs = [tmp_path / f"seed{s}" for s in (0, 1, 2)]
    with pytest.raises(BnafError) as caught:
        train_runs(_params(tmp_path), data, "toy", "L1_H4", [0, 1, 2], outs, log=lambda _: None)
    reasons = str(caught.value).split("; seed ")
    assert len(reasons) == 2 and reasons[0].startswith("seed 1: training diverged: ")
    assert reasons[1].startswith("2: training diverged: ")
    assert [(o / "metrics.json").is_file() for o in outs] == [True, False, False]


@pytest.mark.parametrize("keep", [True, False])
def test_a_finished_run_leaves_its_model_its_settings_and_the_checkpoint_if_asked(
    tmp_path: Path, data: Path, keep: bool
) -> None:
    """``model.pt`` names its dataset, seed and weights (the Polyak average);
    ``metrics.json`` holds the params it ran with and the list of differences from the paper;
    ``checkpoint.pt`` stays only with ``keep_checkpoint``; ``train_subset`` is honoured."""
    p = _params(tmp_path, keep_checkpoint=keep, train_subset=120)
    out = tmp_path / "r"
    m = train_run(p, data, "toy", "L1_H4", 5, out, log=lambda _: None)
    _, meta = load_flow_meta(out / "model.pt")
    assert {k: meta[k] for k in ("dataset", "seed", "weights")} == {
        "dataset": "toy", "seed": 5, "weights": "polyak_average"}  # fmt: skip
    plain = json.loads(json.dumps({"flow": dataclasses.asdict(p.flow),
                                   "train": dataclasses.asdict(p.train)}))  # fmt: skip
    assert m["params"] == plain and m["params"]["train"]["train_subset"] == 120
    assert m["differences"] == json.loads(json.dumps(UCI_DIFFERENCES)) != []
    assert m["train_samples"] == 120
    assert (out / "checkpoint.pt").is_file() == keep


def test_a_run_with_the_fused_adam_is_the_reference_run_up_to_rounding(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    """``fused_adam: true`` (the paper budget) runs the fused kernel, and only then; every
    epoch's loss and validation, and the test log-likelihood, equal the reference optimiser's
    within 1e-4 nats in float32."""
    kernel, calls = torch._fused_adam_, []

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", counted)
    runs, used = [], []
    for fused in (False, True):
        calls.clear()
        p = _params(tmp_path, max_epochs=3, fused_adam=fused)
        runs.append(train_run(p, data, "toy", "L1_H4", 0, tmp_path / f"f{fused}", log=len))
        used.append(len(calls))
    assert used[0] == 0 and used[1] == 3 * 2  # 3 epochs of 2 batches (300 rows, batch 200)
    ref, fused = runs
    for a, b in zip(ref["history"], fused["history"], strict=True):
        assert b["train_nll"] == pytest.approx(a["train_nll"], abs=1e-4)
        assert b["validation_ll"] == pytest.approx(a["validation_ll"], abs=1e-4)
    test_ll = ref["test"]["log_likelihood"]
    assert fused["test"]["log_likelihood"] == pytest.approx(test_ll, abs=1e-4)
