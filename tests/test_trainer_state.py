"""A Trainer's state: its snapshots are copies, its time and sample counts add up.

The loop keeps the snapshot of the last good epoch to return to when an epoch's loss is not
finite, and writes snapshots as checkpoints: training on must never reach into one (the
history, the non-finite events, the best state's tensors), and a restored trainer must not
write back into the snapshot it came from (a second retry restores the same snapshot).
"""

from __future__ import annotations

import copy
import dataclasses
import json
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


def test_a_run_without_improvement_stops_early() -> None:
    """Section 5.3: training stops after ``early_stopping`` epochs without a better validation
    log-likelihood, well before ``max_epochs``, and says why (the metrics' ``stop_reason``)."""
    t = _trainer()
    # a learning rate too small to move the validation by the schedule's threshold: epoch 1
    # is the best, every later one is a bad epoch
    t.tp = dataclasses.replace(t.tp, max_epochs=50, early_stopping=3, patience=10, cooldown=0)
    for group in t.optimizer.param_groups:
        group["lr"] = 1e-30
    t.schedule.early_stopping, t.schedule.patience, t.schedule.cooldown = 3, 10, 0
    while not t.finished and t.epoch < 50:
        t.run_epoch(t.snapshot())
    assert t.finished and t.stop_reason == "early_stopping"
    assert t.epoch == 1 + 3 and t.best_epoch == 1


def test_the_data_order_is_the_run_own_stream() -> None:
    """Each run shuffles with its own generator (seeded from its seed), so other draws from
    the global RNG (another run's initialisation in the same process, a sampler) change
    nothing: what packing several seeds in one process relies on."""
    a, b = _trainer(), _trainer()
    for _ in range(2):
        a.run_epoch(a.snapshot())
        torch.randn(1000)  # someone else's draw between b's epochs
        b.run_epoch(b.snapshot())
    assert [r["train_nll"] for r in a.history] == [r["train_nll"] for r in b.history]
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)


def test_the_epoch_loss_is_the_mean_of_every_batch_loss() -> None:
    """An epoch's ``train_nll`` is the mean of its batches' losses, all of them (the training
    curve of the report), in the order of the run's own shuffling."""
    t = _trainer()
    for group in t.optimizer.param_groups:
        group["lr"] = 1e-30  # the weights stay put, so the batch losses can be recomputed
    order = torch.Generator().manual_seed(0 * 7919 + 1)  # the run's shuffling stream (seed 0)
    perm = torch.randperm(len(t.x_train), generator=order)
    with torch.no_grad():
        losses = [-t.model.log_prob(t.x_train[perm[i : i + 50]]).mean().item()
                  for i in range(0, len(perm), 50)]  # fmt: skip
    assert t.train_epoch() == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_a_non_finite_batch_anywhere_fails_the_epoch(monkeypatch) -> None:
    """One non-finite loss in the middle of an epoch (not only the last batch) makes the epoch
    non-finite, so the run retries it at a lower learning rate."""
    t = _trainer()
    real, calls = t.step, []

    def step(x):
        loss, norm = real(x)
        calls.append(1)
        return (loss * float("nan"), norm) if len(calls) == 2 else (loss, norm)

    monkeypatch.setattr(t, "step", step)
    assert t.train_epoch() is None and len(calls) == 4  # 200 samples in batches of 50


@pytest.mark.parametrize("name", ["amsgrad", "adam"])
def test_the_optimiser_is_the_one_the_params_name(name: str) -> None:
    """``train.optimizer`` chooses AMSGrad (the authors' code) or the paper's Adam, with the
    params' learning rate, betas and eps: the settings the optimiser steps with."""
    p = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    tp = dataclasses.replace(p.train, optimizer=name, eps=3e-7, betas=[0.8, 0.99], lr=2e-3)
    flow = dataclasses.replace(p.flow, flows=1, layers=1, hidden_factor=2)
    x = torch.randn(20, 2)
    group = Trainer(x, x, flow, 0, tp, torch.device("cpu"), log=str).optimizer.param_groups[0]
    assert group["amsgrad"] is (name == "amsgrad")
    assert (group["lr"], tuple(group["betas"]), group["eps"]) == (2e-3, (0.8, 0.99), 3e-7)


def test_random_permutations_follow_the_run_seed() -> None:
    """With ``permutation: random`` each seed's flow has the permutations of ``BNAF(...,
    seed=seed)``: the seed reaches the model, not only the weights and the shuffling."""
    from bnaf.flows import BNAF, Permutation

    p = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    flow = dataclasses.replace(p.flow, flows=4, layers=1, hidden_factor=2, permutation="random")
    x = torch.randn(20, 5)
    perms = {}
    for seed in (0, 1):
        model = Trainer(x, x, flow, seed, p.train, torch.device("cpu"), log=str).model
        want = BNAF(5, **flow.kwargs(), seed=seed)
        got = [t.perm for t in model.transforms if isinstance(t, Permutation)]
        assert all(torch.equal(a, t.perm) for a, t in zip(got, [
            t for t in want.transforms if isinstance(t, Permutation)]))  # fmt: skip
        perms[seed] = got
    assert any(not torch.equal(a, b) for a, b in zip(perms[0], perms[1]))


@pytest.mark.parametrize("mode", ["abs", "rel"])
def test_the_schedule_is_the_one_the_params_name(mode: str) -> None:
    """Patience, cooldown, early stopping and the improvement threshold (value and mode) of the
    plateau schedule come from ``train``, whichever mode it names."""
    p = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    tp = dataclasses.replace(p.train, patience=7, cooldown=3, early_stopping=11,
                             threshold=0.05, threshold_mode=mode)  # fmt: skip
    flow = dataclasses.replace(p.flow, flows=1, layers=1, hidden_factor=2)
    x = torch.randn(20, 2)
    s = Trainer(x, x, flow, 0, tp, torch.device("cpu"), log=str).schedule
    assert (s.patience, s.cooldown, s.early_stopping) == (7, 3, 11)
    assert (s.threshold, s.threshold_mode) == (0.05, mode)


def test_a_non_finite_validation_is_recorded_as_null_and_never_best() -> None:
    """A validation log-likelihood of -inf (a validation row at infinity) is ``None`` in the
    epoch record (JSON has no NaN or infinity) and never becomes the best state."""
    trainer = _trainer()
    trainer.x_val = trainer.x_val.clone()
    trainer.x_val[3, 0] = float("inf")
    record = trainer.run_epoch(trainer.snapshot())
    assert record["validation_ll"] is None and record["best"] is False
    assert trainer.best is None and trainer.best_validation is None
    json.dumps(record, allow_nan=False)  # what metrics.json and history.csv are written from
