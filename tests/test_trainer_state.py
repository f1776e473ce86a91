"""A Trainer's state: its snapshots are copies, its time and sample counts add up.

The loop keeps the snapshot of the last good epoch to return to when an epoch's loss is not
finite, and writes snapshots as checkpoints: training on must never reach into one (the
history, the non-finite events, the best state's tensors), and a restored trainer must not
write back into the snapshot it came from (a second retry restores the same snapshot).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import pytest
import torch

from bnaf.uci.params import load_uci
from bnaf.uci.trainer import Trainer

pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]


def _trainer() -> Trainer:
    p = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    tp = dataclasses.replace(p.train, max_epochs=3, batch_size=50)
    flow = dataclasses.replace(p.flow, flows=1, layers=1, hidden_factor=2)
    gen = torch.Generator().manual_seed(0)
    train, val = torch.randn(200, 2, generator=gen), torch.randn(50, 2, generator=gen)
    return Trainer(train, val, flow, 0, tp, torch.device("cpu"), log=lambda _: None)


def _plain(snap: dict) -> dict:
    return copy.deepcopy(snap)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _train_on(trainer: Trainer) -> None:
    r"""What may happen to a trainer after a snapshot: in-place changes of its best state and
    its records (as a careless update would make), another epoch, a non-finite event."""
    for t in trainer.best["model"].values():  # type: ignore[index]
        t.add_(1.0)
    trainer.history[0]["train_nll"] = float("nan")
    trainer.run_epoch(trainer.snapshot())
    trainer.nonfinite_events.append({"epoch": trainer.epoch, "attempt": 1, "lr_after": 0.0})


def test_training_on_leaves_a_snapshot_unchanged() -> None:
    trainer = _trainer()
    trainer.run_epoch(trainer.snapshot())  # a best state and a history exist
    snap = trainer.snapshot()
    before = _plain(snap)
    _train_on(trainer)
    assert _equal(snap, before)


def test_a_restored_trainer_does_not_write_into_its_snapshot() -> None:
    trainer = _trainer()
    trainer.run_epoch(trainer.snapshot())
    snap = trainer.snapshot()
    before = _plain(snap)
    trainer.restore(snap)
    _train_on(trainer)
    assert _equal(snap, before)


def test_training_time_and_samples_add_up_over_epochs() -> None:
    # what the run's throughput (metrics.json) and the report's cost model are made of
    trainer = _trainer()
    start = time.perf_counter()
    for _ in range(3):
        trainer.run_epoch(trainer.snapshot())
    elapsed = time.perf_counter() - start
    seconds = [h["seconds"] for h in trainer.history]
    assert all(0 < s < elapsed for s in seconds)
    assert trainer.train_s == pytest.approx(sum(seconds), rel=1e-12)
    n = len(trainer.x_train)
    assert trainer.samples_seen == 3 * n
    assert [h["samples_per_s"] for h in trainer.history] == pytest.approx([n / s for s in seconds])
