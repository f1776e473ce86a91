r"""The toy runs' optimisers, for a whole pack at once (Sections 5.1-5.2).

The authors' ``toy2d.py`` steps ``torch.optim.Adam(amsgrad=True)`` (B-NAF), or RMSProp (the
planar baseline, Section 5.2), after ``clip_grad_norm_``, and ``ReduceLROnPlateau`` on the
training loss. A pack (:mod:`bnaf.toy.pack`) holds each parameter of its runs stacked on a
leading *member* dimension, so :class:`PackOptimiser` applies those very updates to every
member in one pass over each stacked tensor, with a learning rate and a clipping factor per
member; on the CPU, where ``torch.optim``'s ``foreach`` path is a loop over tensors, this is
what makes a pack cost about one run. The arithmetic is ``torch.optim``'s, operation for
operation (``tests/test_optimise.py`` checks each member against ``torch.optim`` in float64).
:class:`Plateau` is ``ReduceLROnPlateau(mode="min", threshold_mode="abs")`` for one member.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.toy.params import Optimiser

__all__ = ["PackOptimiser", "Plateau"]

#: torch.optim's defaults, as toy2d.py uses them
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8


class Plateau:
    r"""``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode ``min``, ``threshold_mode="abs"``,
    no cooldown) for one run: multiply the learning rate by ``decay`` (not below ``min_lr``)
    after more than ``patience`` steps without a loss below ``best - threshold``."""

    def __init__(self, opt: Optimiser):
        self.opt = opt
        self.lr, self.best, self.bad, self.steps = opt.lr, math.inf, 0, 0

    def step(self, loss: float) -> None:
        self.steps += 1
        if loss < self.best - self.opt.threshold:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > self.opt.patience:
            new = max(self.lr * self.opt.decay, self.opt.min_lr)
            if self.lr - new > 1e-8:  # torch's eps: changes smaller than this are ignored
                self.lr = new
            self.bad = 0

    def state(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "bad": self.bad, "steps": self.steps}

    def restore(self, s: dict[str, Any]) -> None:
        self.lr, self.best, self.bad, self.steps = s["lr"], s["best"], s["bad"], s["steps"]


def _per_member(update, p: Tensor, scales: list[float], *operands: Tensor,
                alpha: bool = False) -> None:  # fmt: skip
    r"""``p.update(*operands, value=scales[m])`` on member ``m``'s row (``alpha=`` for ``add_``),
    as one operation when every member has the same scale. The scale stays a scalar of the
    kernel, as in ``torch.optim``: a scale tensor would round (and fuse) differently, and the
    pack's runs would leave their separate runs' numbers."""
    key = "alpha" if alpha else "value"
    if all(s == scales[0] for s in scales):
        update(*operands, **{key: scales[0]})
        return
    for m, s in enumerate(scales):
        getattr(p[m], update.__name__)(*(t[m] for t in operands), **{key: s})


class PackOptimiser:
    r"""Adam (optionally AMSGrad) or RMSProp (optionally with momentum) with gradient-norm
    clipping, for ``M`` runs whose parameters are stacked on a leading member dimension.

    Arguments:
        params: the pack's parameters; ``stacked`` ones have the member dimension first,
            otherwise they are one run's own (``M = 1``).
        opt: the runs' optimiser section (the same for every member).
        members: ``M``.
        stacked: whether ``params`` carry the member dimension.
    """

    def __init__(self, params: list[Tensor], opt: Optimiser, members: int, stacked: bool):
        self.params, self.opt, self.members, self.stacked = params, opt, members, stacked
        self.count = 0  # steps taken (Adam's bias correction), the same for every member
        names = (("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if opt.amsgrad else ())
                 if opt.name == "adam" else ("square_avg", "momentum_buffer"))  # fmt: skip
        self.buffers = {n: [torch.zeros_like(p) for p in params] for n in names}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _member_view(self, t: Tensor) -> Tensor:
        return t if self.stacked else t[None]

    def _broadcast(self, values: Tensor, like: Tensor) -> Tensor:
        r"""``values`` (M,) shaped to scale each member's row of ``like``."""
        return values.view(-1, *[1] * (like.dim() - 1))

    @torch.no_grad()
    def step(self, lrs: list[float]) -> None:
        r"""Clip each member's gradient to norm ``clip_norm`` (``clip_grad_norm_``: the norm of
        the per-tensor norms, factor ``min(1, clip / (norm + 1e-6))``), then take one step with
        member ``m``'s learning rate ``lrs[m]``."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if self.stacked and len(live) < len(self.params):
            # the loss went through the models' own parameters, not the pack's stacked ones
            raise BnafError("a packed parameter has no gradient: the loss must use Pack.forward")
        params = [self._member_view(self.params[i]) for i in live]
        grads = [self._member_view(self.params[i].grad) for i in live]  # type: ignore[arg-type]
        buffers = {n: [self._member_view(b[i]) for i in live] for n, b in self.buffers.items()}
        if not params:
            return
        if self.opt.clip_norm is not None:
            # clip_grad_norm_ member by member: each tensor's norm on its own (the reduction
            # order of a whole-tensor norm), then the norm of the member's norms
            rows = [[g[m] for g in grads] for m in range(self.members)]
            norms = [torch._foreach_norm(row) for row in rows]
            total = torch.stack([torch.linalg.vector_norm(torch.stack(n)) for n in norms])
            factor = (self.opt.clip_norm / (total + 1e-6)).clamp_(max=1.0)
            for g in grads:
                g.mul_(self._broadcast(factor, g))
        self.count += 1
        if self.opt.name == "adam":
            self._adam(params, grads, buffers, lrs)
        else:
            self._rmsprop(params, grads, buffers, lrs)

    def _adam(self, params, grads, buffers, lrs: list[float]) -> None:  # type: ignore[no-untyped-def]
        (beta1, beta2), step = ADAM_BETAS, float(self.count)
        bias1, bias2_sqrt = 1 - beta1**step, (1 - beta2**step) ** 0.5
        step_sizes = [(lr / bias1) * -1 for lr in lrs]  # torch's, in double precision
        for i, (p, g) in enumerate(zip(params, grads)):
            exp_avg, exp_avg_sq = buffers["exp_avg"][i], buffers["exp_avg_sq"][i]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            if self.opt.amsgrad:
                top = buffers["max_exp_avg_sq"][i]
                torch.maximum(top, exp_avg_sq, out=top)
                denom = top.sqrt()
            else:
                denom = exp_avg_sq.sqrt()
            denom.div_(bias2_sqrt).add_(ADAM_EPS)
            _per_member(p.addcdiv_, p, step_sizes, exp_avg, denom)

    def _rmsprop(self, params, grads, buffers, lrs: list[float]) -> None:  # type: ignore[no-untyped-def]
        momentum, neg_lrs = self.opt.momentum, [-lr for lr in lrs]
        for i, (p, g) in enumerate(zip(params, grads)):
            square_avg = buffers["square_avg"][i]
            square_avg.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
            avg = square_avg.sqrt().add_(RMSPROP_EPS)
            if momentum > 0:
                buf = buffers["momentum_buffer"][i]
                buf.mul_(momentum).addcdiv_(g, avg)
                _per_member(p.add_, p, neg_lrs, buf, alpha=True)
            else:
                _per_member(p.addcdiv_, p, neg_lrs, g, avg)

    def state(self, member: int) -> dict[str, Any]:
        r"""Member ``member``'s optimiser state (copies), for its own checkpoint."""
        return {
            "count": self.count,
            "buffers": {
                n: [self._member_view(b)[member].clone() for b in bufs]
                for n, bufs in self.buffers.items()
            },  # fmt: skip
        }

    @torch.no_grad()
    def restore(self, member: int, s: dict[str, Any]) -> None:
        self.count = s["count"]
        for n, bufs in self.buffers.items():
            for b, saved in zip(bufs, s["buffers"][n]):
                self._member_view(b)[member].copy_(saved)
