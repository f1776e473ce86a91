"""Polyak averaging (Section 5.3: ``phi = 0.998``) by hand, and where the trainer applies it.

The average is ``a_t = phi a_{t-1} + (1 - phi) theta_t`` where ``theta_t`` are the weights
*after* the t-th optimiser step (the authors' ``optim/adam.py`` updates it inside ``step``, after
the parameter update). Validation, the kept best state and the saved model use ``a``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from bnaf.core.optim import PolyakAverage
from bnaf.flows import BNAF, FlowConfig
from bnaf.uci.params import load_uci
from bnaf.uci.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = Path(__file__).resolve().parents[1] / "params" / "quick" / "uci.yaml"
FLOW = FlowConfig.of(flows=2, layers=1, hidden_factor=2)


@pytest.mark.parametrize(
    "init, expected",
    # phi = 0.9, weights 10 then 20 then 40 after three steps:
    # zeros:  0 -> 0.1*10 = 1 -> 0.9*1 + 0.1*20 = 2.9 -> 0.9*2.9 + 0.1*40 = 6.61
    # params: 5 -> 0.9*5 + 1 = 5.5 -> 0.9*5.5 + 2 = 6.95 -> 0.9*6.95 + 4 = 10.255
    [("zeros", [1.0, 2.9, 6.61]), ("params", [5.5, 6.95, 10.255])],
)
def test_asymmetric_rate_by_hand(init: str, expected: list[float]) -> None:
    # phi != 1/2, so exchanging phi and 1 - phi changes every value (0.1*0 + 0.9*10 = 9, ...)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(5.0)
    avg = PolyakAverage(model, rate=0.9, init=init)
    got = []
    for value in (10.0, 20.0, 40.0):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update()
        got.append(float(avg.average[0]))
    assert got == pytest.approx(expected, abs=1e-12)


def test_paper_rate_weights_the_newest_step_by_one_minus_phi() -> None:
    # phi = 0.998 from zero, constant weights c: a_t = (1 - 0.998^t) c (a geometric series)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    avg = PolyakAverage(model, rate=0.998, init="zeros")
    for _ in range(500):
        avg.update()
    assert float(avg.average[0]) == pytest.approx(3.0 * (1 - 0.998**500), rel=1e-10)


def test_rate_outside_unit_interval_is_refused() -> None:
    model = nn.Linear(1, 1)
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match="Polyak rate"):
            PolyakAverage(model, rate)
    for rate in (0.0, 1.0):  # the closed interval's ends are allowed
        PolyakAverage(model, rate)
    with pytest.raises(ValueError, match="init"):
        PolyakAverage(model, 0.5, init="ones")  # type: ignore[arg-type]


def test_only_trainable_parameters_are_averaged() -> None:
    model = nn.Linear(2, 2)
    model.bias.requires_grad_(False)
    avg = PolyakAverage(model, 0.5, init="params")
    assert len(avg.average) == 1 and avg.average[0].shape == (2, 2)


def _trainer(n_train: int, batch_size: int, polyak: float, init: str = "zeros") -> Trainer:
    tp = dataclasses.replace(
        load_uci(QUICK).train,
        batch_size=batch_size,
        polyak=polyak,
        polyak_init=init,
        max_epochs=3,
        device="cpu",
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 9, 3, generator=g)
    return Trainer(x[:n_train], x[n_train:], FLOW, 0, tp, torch.device("cpu"), log=lambda _: 0)


@pytest.mark.parametrize("init", ["zeros", "params"])
def test_trainer_averages_the_weights_after_each_optimiser_step(init: str) -> None:
    # 10 samples in batches of 4: three steps per epoch; two epochs are six updates
    trainer = _trainer(10, 4, polyak=0.7, init=init)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    expected = [p.detach().clone() if init == "params" else torch.zeros_like(p) for p in params]
    step = trainer.optimizer.step
    steps = 0

    def step_then_record(*args, **kwargs):
        nonlocal steps
        step(*args, **kwargs)
        steps += 1
        for e, p in zip(expected, params):  # by hand: a <- phi a + (1 - phi) theta_after
            e.mul_(0.7).add_(0.3 * p.detach())

    trainer.optimizer.step = step_then_record  # type: ignore[method-assign]
    trainer.train_epoch()
    trainer.train_epoch()
    assert steps == 6
    for got, want in zip(trainer.polyak.average, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_validation_uses_the_average_and_leaves_the_live_weights() -> None:
    trainer = _trainer(10, 4, polyak=0.6)
    trainer.train_epoch()
    live = copy.deepcopy(trainer.model.state_dict())
    averaged = copy.deepcopy(trainer.model)
    trainable = [p for p in averaged.parameters() if p.requires_grad]
    with torch.no_grad():
        for p, a in zip(trainable, trainer.polyak.average):
            p.copy_(a)
    exact, signal = trainer.validate()
    with torch.no_grad():  # brute force: one sample at a time, a plain float64 mean
        by_hand = sum(float(averaged.log_prob(x[None])) for x in trainer.x_val) / 9
    assert exact == pytest.approx(by_hand, rel=1e-10, abs=1e-10)
    assert signal == exact  # selection_mean: sample
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, live[k], rtol=0, atol=0)
    # and it is not the live weights' figure (the average lags behind the live weights)
    with torch.no_grad():
        live_ll = float(trainer.model.log_prob(trainer.x_val).mean())
    assert abs(live_ll - exact) > 1e-6


def test_batch_selection_signal_is_the_mean_of_batch_means() -> None:
    trainer = _trainer(10, 4, polyak=0.6)
    trainer.tp = dataclasses.replace(trainer.tp, selection_mean="batch")
    trainer.train_epoch()
    trainer.polyak.swap()
    with torch.no_grad():
        values = trainer.model.log_prob(trainer.x_val).double()
    trainer.polyak.swap()
    exact, signal = trainer.validate()
    # 9 validation points in batches of 4: (4, 4, 1), each batch one vote
    by_hand = (values[:4].mean() + values[4:8].mean() + values[8:].mean()) / 3
    assert exact == pytest.approx(float(values.mean()), rel=1e-10)
    assert signal == pytest.approx(float(by_hand), rel=1e-10)
    assert abs(signal - exact) > 1e-8


def test_bnaf_has_parameters_for_every_average() -> None:
    model = BNAF(3, **FLOW.kwargs())
    avg = PolyakAverage(model, 0.998)
    assert [a.shape for a in avg.average] == [p.shape for p in model.parameters()]
