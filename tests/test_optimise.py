"""The toy packs' optimiser (:mod:`bnaf.toy.optimise`) is ``torch.optim`` member by member.

A pack steps its runs' stacked parameters in one pass; each member must get exactly the update
its run alone gets from ``clip_grad_norm_`` + ``torch.optim.Adam``/``RMSprop`` +
``ReduceLROnPlateau``, bit for bit in float32 (the committed paper-budget toy reference was
made with ``torch.optim``), with learning rates that differ between members.
"""

from __future__ import annotations

import pytest
import torch

from bnaf.core.errors import BnafError
from bnaf.toy.optimise import PackOptimiser, Plateau
from bnaf.toy.params import Optimiser

SHAPES = [(7, 3), (5,), (4, 2, 3)]  # sizes whose vector loops end in a scalar tail
CASES = [("adam", True, 0.0), ("adam", False, 0.0), ("rmsprop", False, 0.9),
         ("rmsprop", False, 0.0)]  # fmt: skip


def _opt(name: str, amsgrad: bool, momentum: float, clip: float | None = 1.0) -> Optimiser:
    return Optimiser(
        name=name, lr=1e-2, amsgrad=amsgrad, momentum=momentum, decay=0.5, patience=3,
        min_lr=1e-4, threshold=0.0, clip_norm=clip, iterations=1, batch_size=1,
    )  # fmt: skip


def _torch_optimiser(params: list[torch.Tensor], opt: Optimiser) -> torch.optim.Optimizer:
    if opt.name == "adam":
        return torch.optim.Adam(params, lr=opt.lr, amsgrad=opt.amsgrad, foreach=True)
    return torch.optim.RMSprop(params, lr=opt.lr, momentum=opt.momentum, foreach=True)


@pytest.mark.float32
@pytest.mark.parametrize(("name", "amsgrad", "momentum"), CASES)
def test_each_member_is_torch_optim_bit_for_bit(name: str, amsgrad: bool, momentum: float) -> None:
    opt, members, steps = _opt(name, amsgrad, momentum), 3, 40
    gen = torch.Generator().manual_seed(0)
    stacked = [torch.randn(members, *s, generator=gen).requires_grad_() for s in SHAPES]
    alone = [[p[m].detach().clone().requires_grad_() for p in stacked] for m in range(members)]
    torch_opts = [_torch_optimiser(ps, opt) for ps in alone]
    pack = PackOptimiser(stacked, opt, members, stacked=True)
    for step in range(steps):
        # member 0 keeps the initial rate, 1 and 2 decay at different steps; the gradients of
        # member 2 are large, so clipping acts on it and not on the others
        lrs = [opt.lr, opt.lr * 0.5 ** (step // 10), opt.lr * 0.5 ** (step // 7)]
        scale = [0.01, 0.1, 10.0]
        grads = [torch.randn(members, *s, generator=gen) for s in SHAPES]
        for p, g in zip(stacked, grads):
            p.grad = g * torch.tensor(scale).view(-1, *[1] * len(g.shape[1:]))
        pack.step(lrs)
        for m, (ps, torch_opt) in enumerate(zip(alone, torch_opts)):
            for p, g in zip(ps, grads):
                p.grad = g[m] * scale[m]
            torch.nn.utils.clip_grad_norm_(ps, max_norm=opt.clip_norm, foreach=True)
            for group in torch_opt.param_groups:
                group["lr"] = lrs[m]
            torch_opt.step()
    for m in range(members):
        for p, q in zip(stacked, alone[m]):
            assert torch.equal(p[m], q), (name, m)


@pytest.mark.float32
def test_one_run_is_torch_optim_and_skips_parameters_without_gradient() -> None:
    opt = _opt("adam", True, 0.0)
    gen = torch.Generator().manual_seed(1)
    mine = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    ref = [p.detach().clone().requires_grad_() for p in mine]
    pack, torch_opt = PackOptimiser(mine, opt, 1, stacked=False), _torch_optimiser(ref, opt)
    for _ in range(15):
        grads = [torch.randn(s, generator=gen) * 3 for s in SHAPES]
        for p, q, g in zip(mine, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        mine[1].grad = ref[1].grad = None  # an unused parameter: torch leaves it alone
        pack.step([opt.lr])
        torch.nn.utils.clip_grad_norm_(ref, max_norm=opt.clip_norm, foreach=True)
        torch_opt.step()
    for p, q in zip(mine, ref):
        assert torch.equal(p, q)


def _torch_plateau(opt):  # type: ignore[no-untyped-def]
    """torch's ``ReduceLROnPlateau`` as the toy runs' section asks for it, on a dummy SGD."""
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=opt.lr)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        ref_opt, factor=opt.decay, patience=opt.patience, min_lr=opt.min_lr,
        threshold=opt.threshold, threshold_mode="abs",
    )  # fmt: skip
    return ref_opt, ref


def test_plateau_is_reduce_lr_on_plateau() -> None:
    opt = _opt("adam", True, 0.0)
    opt.threshold, opt.min_lr = 0.05, 1e-3
    ref_opt, ref = _torch_plateau(opt)
    mine = Plateau(opt)
    gen = torch.Generator().manual_seed(2)
    # a loss that improves, stalls (within the threshold), improves again and then stalls
    # long enough to hit min_lr
    losses = [5.0 - 0.1 * i for i in range(10)] + [4.1 + 0.01 * float(torch.rand(1, generator=gen))
              for _ in range(60)]  # fmt: skip
    lrs = set()
    for loss in losses:
        mine.step(loss)
        ref.step(loss)
        assert mine.lr == ref_opt.param_groups[0]["lr"]
        lrs.add(mine.lr)
    assert len(lrs) > 3 and min(lrs) == opt.min_lr  # several decays, down to the floor


def test_a_decay_smaller_than_torchs_eps_is_ignored_as_torch_ignores_it() -> None:
    """``ReduceLROnPlateau`` skips a decay that would change the rate by less than its eps
    (1e-8): with ``min_lr`` 5e-9 below the rate, the rate never moves."""
    opt = _opt("adam", True, 0.0)
    opt.threshold, opt.min_lr = 0.05, opt.lr - 5e-9
    ref_opt, ref = _torch_plateau(opt)
    mine = Plateau(opt)
    for _ in range(4 * (opt.patience + 1)):  # a flat loss: a decay is due several times
        mine.step(1.0)
        ref.step(1.0)
        assert mine.lr == ref_opt.param_groups[0]["lr"] == opt.lr


@pytest.mark.float32
def test_state_and_restore_continue_bit_for_bit() -> None:
    opt, members = _opt("rmsprop", False, 0.9), 2
    gen = torch.Generator().manual_seed(3)
    grads = [[torch.randn(members, *s, generator=gen) for s in SHAPES] for _ in range(20)]
    start = [torch.randn(members, *s, generator=gen) for s in SHAPES]

    def run(steps: range, params, pack) -> None:  # type: ignore[no-untyped-def]
        for k in steps:
            for p, g in zip(params, grads[k]):
                p.grad = g.clone()
            pack.step([1e-2, 3e-3])

    whole = [s.clone().requires_grad_() for s in start]
    run(range(20), whole, PackOptimiser(whole, opt, members, stacked=True))
    first = [s.clone().requires_grad_() for s in start]
    pack = PackOptimiser(first, opt, members, stacked=True)
    run(range(12), first, pack)
    saved = [pack.state(m) for m in range(members)]
    again = [p.detach().clone().requires_grad_() for p in first]
    resumed = PackOptimiser(again, opt, members, stacked=True)
    for m, s in enumerate(saved):
        resumed.restore(m, s)
    run(range(12, 20), again, resumed)
    for p, q in zip(whole, again):
        assert torch.equal(p, q)


def test_a_stacked_parameter_without_gradient_is_refused() -> None:
    params = [torch.zeros(2, 3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    pack = PackOptimiser(params, _opt("adam", True, 0.0), 2, stacked=True)
    params[0].grad = torch.ones(2, 3)
    with pytest.raises(BnafError, match="Pack.forward"):
        pack.step([1e-2, 1e-2])
    assert torch.equal(params[0].detach(), torch.zeros(2, 3))  # refused before any update
