r"""Row-by-row evaluation of an amortised block flow for the inverse (beyond the paper).

An amortised layer (Section 5.4) computes ``pre = b + v1 * (W (v2 * h))`` with per-point
``b``, ``v1 > 0``, ``v2 > 0`` and the shared masked ``W``. The scales are positive, so every
output ``y_i`` stays strictly increasing in ``x_i`` given ``x_{<i}`` and the root search of
:mod:`bnaf.flows.inverse` applies unchanged. :class:`ScaledRowSolver` is its row evaluator
with the scales: the accumulated contributions of the solved rows are kept unscaled by ``v1``
(``C = W (v2 * h)`` over those rows), and ``b + v1 * C`` is formed per row.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bnaf.flows.inverse import _RowSolver
from bnaf.flows.layers import BlockFlow, Tanh

__all__ = ["ScaledRowSolver"]

#: per layer ``(b, log v1, log v2)``, shapes ``(n, out)``, ``(n, out)``, ``(n, in)``
LayerParams = list[tuple[Tensor, Tensor, Tensor]]


class ScaledRowSolver(_RowSolver):
    r"""The row evaluator of :func:`bnaf.flows.inverse.invert_flow` for a block flow whose
    layers take per-point ``(b, log v1, log v2)`` (an amortised block flow, Section 5.4).

    ``row_constants`` returns, per layer, ``[b + v1 C, v1, v2]`` restricted to row ``i`` (a
    flat list, so the root search can index every entry by the points it still solves)."""

    def __init__(self, flow: BlockFlow, params: LayerParams, like: Tensor):
        n = like.shape[0]
        self.flow, self.d = flow, flow.dim
        self.W = [lin.weights()[0].detach().to(like) for lin in flow.linears]
        self.a = [lin.out_factor for lin in flow.linears]
        self.b = [lin.in_factor for lin in flow.linears]
        self.bias = [b.detach().to(like) for b, _, _ in params]
        self.v1 = [v.detach().to(like).exp() for _, v, _ in params]
        self.v2 = [v.detach().to(like).exp() for _, _, v in params]
        self.C = [like.new_zeros(n, w.shape[0]) for w in self.W]
        gated = flow.residual == "gated"
        self.keep = float(torch.sigmoid(flow.gate.detach())) if gated else 1.0
        self.leak = {"normal": 1.0, "gated": 1.0 - self.keep}.get(flow.residual, 0.0)
        lim, _ = flow.activations[0](torch.tensor([-math.inf, math.inf], dtype=torch.float64))
        self.act_lo, self.act_hi = float(lim[0]), float(lim[1])

    def row_constants(self, i: int) -> list[Tensor]:
        out: list[Tensor] = []
        for layer, (a, b) in enumerate(zip(self.a, self.b)):
            rows, cols = slice(i * a, (i + 1) * a), slice(i * b, (i + 1) * b)
            v1 = self.v1[layer][:, rows]
            out += [self.bias[layer][:, rows] + v1 * self.C[layer][:, rows], v1]
            out.append(self.v2[layer][:, cols])
        return out

    def evaluate(
        self, i: int, x: Tensor, rows: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        rows = self.row_constants(i) if rows is None else rows
        const, v1, v2 = rows[0:3]
        w = self._block(0, i)[:, 0]
        slope = v1 * v2 * w  # (m, a0): d pre / d x_i, positive
        pre, dpre = const + x[:, None] * slope, slope
        inputs = [x[:, None]]
        for layer, act in enumerate(self.flow.activations, start=1):
            u, log_du = (torch.tanh(pre), None) if isinstance(act, Tanh) else act(pre)
            du = 1.0 - u * u if log_du is None else log_du.exp()
            inputs.append(u)
            const, v1, v2 = rows[3 * layer : 3 * layer + 3]
            block_t = self._block(layer, i).T
            pre = const + v1 * ((u * v2) @ block_t)
            dpre = v1 * ((du * dpre * v2) @ block_t)
        f, df = pre[:, 0], dpre[:, 0]
        return self.keep * f + self.leak * x, self.keep * df + self.leak, inputs

    def f_limits(self, i: int, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        if not (math.isfinite(self.act_lo) and math.isfinite(self.act_hi)):
            inf = torch.full((n,), math.inf, dtype=like.dtype, device=like.device)
            return -inf, inf
        rows = self.row_constants(i)
        out = []
        for value in (self.act_lo, self.act_hi):
            u = torch.full((n, self.a[0]), value, dtype=like.dtype, device=like.device)
            for layer in range(1, len(self.W)):
                const, v1, v2 = rows[3 * layer : 3 * layer + 3]
                pre = const + v1 * ((u * v2) @ self._block(layer, i).T)
                if layer < len(self.W) - 1:
                    u, _ = self.flow.activations[layer](pre)
            out.append(self.keep * pre[:, 0])
        return out[0], out[1]

    def f_bounds(self, i: int) -> tuple[Tensor, Tensor]:
        last = len(self.W) - 1
        const, v1, v2 = self.row_constants(i)[3 * last : 3 * last + 3]
        coef = self._block(last, i)[0] * v2  # (n, b): either sign, scaled per point
        top = torch.where(coef > 0, coef * self.act_hi, coef * self.act_lo).sum(-1)
        bottom = torch.where(coef > 0, coef * self.act_lo, coef * self.act_hi).sum(-1)
        c, s = const[:, 0], v1[:, 0]
        return self.keep * (c + s * bottom), self.keep * (c + s * top)

    def saturation_bracket(self, i: int) -> tuple[Tensor, Tensor]:
        const, v1, v2 = self.row_constants(i)[0:3]
        slope = v1 * v2 * self._block(0, i)[:, 0]
        t = 0.5 * math.log(4.0 / torch.finfo(const.dtype).eps) + 2.0
        return ((-t - const) / slope).amin(-1), ((t - const) / slope).amax(-1)

    def commit(self, i: int, inputs: list[Tensor]) -> None:
        for layer, u in enumerate(inputs):
            a, b = self.a[layer], self.b[layer]
            cols = self.W[layer][(i + 1) * a :, i * b : (i + 1) * b]
            v2 = self.v2[layer][:, i * b : (i + 1) * b]
            self.C[layer][:, (i + 1) * a :] += (u * v2) @ cols.T
