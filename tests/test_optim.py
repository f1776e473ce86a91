"""Adam/AMSGrad, Polyak averaging and the plateau schedule against hand-worked sequences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnaf.core.optim import Adam, PlateauSchedule, PolyakAverage, decayed_lr


def _steps(amsgrad: bool, grads: list[float], lr: float = 0.1) -> list[float]:
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Adam([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, amsgrad=amsgrad)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(float(p.detach()))
    return out


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_matches_kingma_ba_algorithm_by_hand(amsgrad: bool) -> None:
    # Step 1, g = 2: m = 0.2, v = 0.004, alpha_t = 0.1 sqrt(1 - .999) / (1 - .9);
    # the update alpha_t * m / (sqrt(v) + eps) is ~0.1 (Adam's first step has size ~lr).
    # Step 2, g = 0: m = 0.18, v = 0.003996 (Adam) or max(0.004, 0.003996) (AMSGrad).
    p1, p2 = _steps(amsgrad, [2.0, 0.0])
    alpha1 = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    assert p1 == pytest.approx(1.0 - alpha1 * 0.2 / (math.sqrt(0.004) + 1e-8), abs=1e-12)
    assert p1 == pytest.approx(0.9, abs=1e-7)
    v2 = 0.004 if amsgrad else 0.999 * 0.004
    alpha2 = 0.1 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    assert p2 == pytest.approx(p1 - alpha2 * 0.18 / (math.sqrt(v2) + 1e-8), abs=1e-12)


def test_amsgrad_differs_from_adam_only_when_second_moment_falls() -> None:
    rising = [0.1, 0.5, 1.0]
    assert _steps(False, rising) == pytest.approx(_steps(True, rising), abs=1e-15)
    assert _steps(False, [2.0, 0.0])[1] != pytest.approx(_steps(True, [2.0, 0.0])[1], abs=1e-9)


@pytest.mark.parametrize("init", ["zeros", "params"])
def test_polyak_average_by_hand(init: str) -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    avg = PolyakAverage(model, rate=0.5, init=init)
    start = 0.0 if init == "zeros" else 3.0
    expected = start
    for value in (2.0, 4.0, 8.0):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update()
        expected = 0.5 * expected + 0.5 * value
        assert float(avg.average[0]) == pytest.approx(expected)
    # zeros: 0 -> 1 -> 2.5 -> 5.25; params: 3 -> 2.5 -> 3.25 -> 5.625
    assert expected == (5.25 if init == "zeros" else 5.625)
    avg.swap()
    assert float(model.weight.detach()) == pytest.approx(expected)
    avg.swap()
    assert float(model.weight.detach()) == 8.0
    state = avg.state_dict()
    other = PolyakAverage(model, rate=0.9)
    other.load_state_dict(state)
    assert other.rate == 0.5 and float(other.average[0]) == pytest.approx(expected)


def test_plateau_schedule_hand_worked_sequence() -> None:
    # patience 2, cooldown 1, early stopping after 5 epochs, improvement = 0.1 below best.
    s = PlateauSchedule(patience=2, cooldown=1, early_stopping=5, threshold=0.1)
    losses = [1.0, 0.95, 0.95, 0.95, 0.95, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    got = [s.step(x) for x in losses]
    # e1 best; e2-e3 bad (0.95 is not below 1.0 - 0.1); e4: 3 bad > 2 -> decay, cooldown 1;
    # e5 in cooldown (bad not counted); e6 best; e7, e8 bad; e9 decay; e10 cooldown;
    # e11: five epochs without improvement since e6 -> stop.
    assert [i + 1 for i, d in enumerate(got) if d.improved] == [1, 6]
    assert [i + 1 for i, d in enumerate(got) if d.reduce] == [4, 9]
    assert [i + 1 for i, d in enumerate(got) if d.stop] == [11]
    assert s.best == 0.5


def test_plateau_schedule_rel_mode_and_nonfinite() -> None:
    s = PlateauSchedule(
        patience=0, cooldown=0, early_stopping=10, threshold=0.1, threshold_mode="rel"
    )
    assert s.step(10.0).improved
    assert not s.step(9.5).improved  # needs < 10 * 0.9
    assert s.step(8.9).improved
    d = s.step(float("nan"))
    assert not d.improved and d.reduce  # a NaN validation never counts as an improvement


def test_plateau_state_round_trip() -> None:
    s = PlateauSchedule(patience=1, cooldown=2, early_stopping=4)
    for x in (3.0, 3.0, 3.0):
        s.step(x)
    t = PlateauSchedule()
    t.load_state_dict(s.state_dict())
    assert [t.step(x) for x in (3.0, 1.0)] == [s.step(x) for x in (3.0, 1.0)]


def test_decayed_lr_halves_down_to_the_minimum() -> None:
    lrs = [1e-2]
    for _ in range(6):
        lrs.append(decayed_lr(lrs[-1], 0.5, 5e-4))
    assert lrs == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3, 6.25e-4, 5e-4, 5e-4])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_agrees_with_torch_adam_when_eps_is_zero(amsgrad: bool) -> None:
    # torch.optim.Adam adds eps to sqrt(v / bias_correction2) instead of sqrt(v); with eps = 0
    # both are the same update, so torch's implementation is an independent reference.
    torch.manual_seed(0)
    grads = [torch.randn(5, 3, dtype=torch.float64) for _ in range(30)]
    ours = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    ref = nn.Parameter(ours.detach().clone())
    opt_ours = Adam([ours], lr=1e-2, eps=0.0, amsgrad=amsgrad)
    opt_ref = torch.optim.Adam([ref], lr=1e-2, eps=0.0, amsgrad=amsgrad)
    for g in grads:
        for p, opt in ((ours, opt_ours), (ref, opt_ref)):
            p.grad = g.clone()
            opt.step()
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode,cooldown", [("abs", 10), ("abs", 0), ("rel", 0)])
@pytest.mark.parametrize("seed", range(5))
def test_plateau_decays_match_torch_reduce_lr_on_plateau(seed: int, mode, cooldown) -> None:
    # The authors' scheduler subclasses torch's ReduceLROnPlateau: without reloads and early
    # stopping, our schedule + decayed_lr must give torch's learning rates epoch by epoch.
    gen = torch.Generator().manual_seed(seed)
    losses = (torch.cumsum(torch.randn(300, generator=gen), 0) * 0.01 + 3.0).tolist()
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-2)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=20, cooldown=cooldown, min_lr=5e-4, threshold=3e-3,
        threshold_mode=mode,
    )  # fmt: skip
    # a threshold near a step's size, so that "abs" and "rel" (x 3.0) tell apart
    ours, lr = PlateauSchedule(20, cooldown, 10_000, 3e-3, mode), 1e-2
    for loss in losses:
        ref.step(loss)
        if ours.step(loss).reduce:
            lr = decayed_lr(lr, 0.5, 5e-4)
        assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert lr < 1e-2  # the sequences do contain plateaus


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_fused_adam_is_the_same_update_up_to_rounding(amsgrad: bool, dtype) -> None:
    """``fused=True`` against the reference form, with a large ``eps`` (where its place
    matters: on ``sqrt(v)``, not on ``sqrt(v / (1 - beta2^t))``), a learning-rate decay half
    way, and a parameter that misses a step (its own bias correction, the reference path)."""
    torch.manual_seed(0)
    shapes = [(30, 7), (5,), (2, 3)]
    ref = [nn.Parameter(torch.randn(s, dtype=dtype)) for s in shapes]
    fused = [nn.Parameter(p.detach().clone()) for p in ref]
    start = ref[0].detach().clone()
    opts = [Adam(ps, lr=1e-2, eps=1e-3, amsgrad=amsgrad, fused=f)
            for ps, f in ((ref, False), (fused, True))]  # fmt: skip
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    for t in range(40):
        grads = [torch.randn(s, dtype=dtype) for s in shapes]
        for ps, opt in zip((ref, fused), opts):
            if t == 20:
                opt.param_groups[0]["lr"] = 5e-3
            for p, g in zip(ps, grads):
                p.grad = None if (t == 5 and p.shape == (5,)) else g.clone()
            opt.step()
        for a, b in zip(ref, fused):
            torch.testing.assert_close(b, a, rtol=0, atol=tol)
    steps = [[o.state[p]["step"] for p in ps] for o, ps in zip(opts, (ref, fused))]
    assert steps[0] == steps[1] == [40, 39, 40]
    sa, sb = opts[0].state_dict(), opts[1].state_dict()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for k, v in sa["state"][i].items():
            torch.testing.assert_close(sb["state"][i][k], v, rtol=0, atol=tol)
    assert float((fused[0].detach() - start).abs().max()) > 0.05  # and both moved


def test_the_reference_adam_is_the_default() -> None:
    """The fused step is asked for (``uci.train.fused_adam: true``); the default is the
    reference update, which every other caller and the tests' references get."""
    p = nn.Parameter(torch.zeros(3))
    assert Adam([p]).fused is False
