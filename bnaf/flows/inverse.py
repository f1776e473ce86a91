r"""The inverse of a B-NAF stack and its range (beyond the paper: Section 6 leaves it open).

Within one block flow, output ``y_i`` depends on ``x_{<=i}`` only and is strictly increasing
in ``x_i`` (the diagonal blocks of every layer are positive, Eq. 8, and the activations are
strictly increasing), so ``x = f^{-1}(y)`` is found dimension by dimension in autoregressive
order by a one-dimensional, bracketed root search. The search evaluates only block row ``i``:
the contributions of the solved rows ``< i`` to every layer's pre-activations are accumulated
once (in total the cost of one forward pass), after which one evaluation of ``y_i`` and of
``dy_i/dx_i`` costs ``L + 1`` small ``k x k`` products per sample.

The root search is a safeguarded Newton/bisection hybrid (``rtsafe`` of Numerical Recipes,
Section 9.4), vectorised over the batch: a Newton step is taken when it stays inside the
bracket and at least halves the step before last, a bisection step otherwise. A coordinate is
solved when its last step or its bracket is at most ``xtol * (1 + |x_i|)``. Newton converges
quadratically, so in float64 the result is at rounding level: over random stacks of every
configuration (``tests/test_inverse.py``) ``|f(f^{-1}(z)) - z| <= 1e-12 (1 + |z|)`` and
``|f^{-1}(f(x)) - x| <= ~eps (1 + |z|) / sigma_min(J_f(x))`` (the conditioning of ``f``).

Range. With ``tanh`` the first hidden layer's units of row ``i`` saturate to ``+-1`` as
``x_i -> +-inf``, so given ``x_{<i}`` the flow without a residual maps onto the open interval
between the two saturated outputs; a flow whose last map is of this kind maps ``R^d`` onto a
bounded set and its density integrates to the base mass of that set (< 1). A residual
(``x + f(x)`` or ``alpha f(x) + (1 - alpha) x``) or LeakyReLU activations make the flow onto
``R``. Points outside the range are flagged instead of being returned as numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.flows.layers import BlockFlow, Permutation, Stack, Tanh

OutsideMode = Literal["raise", "mask"]

__all__ = ["InverseResult", "default_xtol", "invert", "invert_checked", "invert_flow", "is_onto"]


@dataclass
class InverseResult:
    r"""What :func:`invert` returns.

    Attributes:
        x: the preimages, shape ``(n, d)``; rows of points outside the range are NaN.
        inside: ``(n,)`` bool, the point lies in the flow's range.
        converged: ``(n,)`` bool, every coordinate met the tolerance within ``max_iter``.
        iterations: ``(flows, d)``, mean number of evaluations of ``y_i`` per point (bracket
            expansion and root search), in the order the flows are inverted (last flow first).
        max_iterations: ``(flows, d)``, the largest such number over the batch.
    """

    x: Tensor
    inside: Tensor
    converged: Tensor
    iterations: Tensor
    max_iterations: Tensor


def default_xtol(dtype: torch.dtype) -> float:
    r"""Default tolerance: ``1e-12`` in float64, ``1e-5`` in lower precisions."""
    return 1e-12 if dtype == torch.float64 else 1e-5


def _activation_limits(flow: BlockFlow) -> tuple[float, float]:
    """Limits of the activation at -inf and +inf (+-1 for tanh, +-inf for LeakyReLU)."""
    y, _ = flow.activations[0](torch.tensor([-math.inf, math.inf], dtype=torch.float64))
    return float(y[0]), float(y[1])


def _one_minus_alpha(flow: BlockFlow) -> float:
    """Weight of ``x`` in the residual; 0 without one (computed as ``flow.forward`` does)."""
    if flow.residual == "normal":
        return 1.0
    if flow.residual == "gated":
        return float(1.0 - torch.sigmoid(flow.gate.detach()))
    return 0.0


def is_onto(flow: BlockFlow) -> bool:
    r"""Whether ``flow`` maps ``R^d`` onto ``R^d`` (unbounded activation or a residual)."""
    lo, hi = _activation_limits(flow)
    return not (math.isfinite(lo) and math.isfinite(hi)) or _one_minus_alpha(flow) > 0.0


class _RowSolver:
    """Incremental evaluation of one block flow, row by row (see the module docstring)."""

    def __init__(self, flow: BlockFlow, n: int, like: Tensor):
        self.flow, self.d = flow, flow.dim
        self.W = [lin.weights()[0].detach().to(like) for lin in flow.linears]
        self.a = [lin.out_factor for lin in flow.linears]
        self.b = [lin.in_factor for lin in flow.linears]
        # Pre-activations accumulated from the solved rows (the bias to begin with).
        self.C = [lin.bias.detach().to(like).expand(n, -1).clone() for lin in flow.linears]
        # y = keep * f(x) + leak * x, as flow.forward computes it.
        gated = flow.residual == "gated"
        self.keep = float(torch.sigmoid(flow.gate.detach())) if gated else 1.0
        self.leak = _one_minus_alpha(flow)
        self.act_lo, self.act_hi = _activation_limits(flow)

    def _block(self, layer: int, i: int) -> Tensor:
        a, b = self.a[layer], self.b[layer]
        return self.W[layer][i * a : (i + 1) * a, i * b : (i + 1) * b]

    def row_constants(self, i: int) -> list[Tensor]:
        """Row ``i`` of every layer's accumulated pre-activations, each ``(n, a)``."""
        return [c[:, i * a : (i + 1) * a] for c, a in zip(self.C, self.a)]

    def evaluate(
        self, i: int, x: Tensor, rows: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``y_i``, ``dy_i/dx_i`` at ``x_i = x`` (m,), and row ``i`` of every layer's input;
        ``rows`` (default: all points) are the matching :meth:`row_constants`."""
        rows = self.row_constants(i) if rows is None else rows
        w = self._block(0, i)[:, 0]  # (a0,), positive
        pre = rows[0] + x[:, None] * w
        dpre = w.expand_as(pre)
        inputs = [x[:, None]]
        for layer, act in enumerate(self.flow.activations, start=1):
            u, log_du = (torch.tanh(pre), None) if isinstance(act, Tanh) else act(pre)
            # tanh' = 1 - tanh^2 is cheaper than the exp of the log-derivative.
            du = 1.0 - u * u if log_du is None else log_du.exp()
            inputs.append(u)
            block = self._block(layer, i)
            pre = rows[layer] + u @ block.T
            dpre = (du * dpre) @ block.T
        f, df = pre[:, 0], dpre[:, 0]
        return self.keep * f + self.leak * x, self.keep * df + self.leak, inputs

    def f_limits(self, i: int, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``keep * f_i`` (the residual's branch) as ``x_i -> -inf`` and ``+inf``, (n,)."""
        if not (math.isfinite(self.act_lo) and math.isfinite(self.act_hi)):
            inf = torch.full((n,), math.inf, dtype=like.dtype, device=like.device)
            return -inf, inf
        out = []
        for value in (self.act_lo, self.act_hi):
            # Row i of the first layer saturates; later layers see finite inputs.
            u = torch.full((n, self.a[0]), value, dtype=like.dtype, device=like.device)
            for layer in range(1, len(self.W)):
                a = self.a[layer]
                pre = self.C[layer][:, i * a : (i + 1) * a] + u @ self._block(layer, i).T
                if layer < len(self.W) - 1:
                    u, _ = self.flow.activations[layer](pre)
            out.append(self.keep * pre[:, 0])
        return out[0], out[1]

    def f_bounds(self, i: int) -> tuple[Tensor, Tensor]:
        """Cheap bounds on ``keep * f_i`` for a bounded activation: the last layer's inputs
        lie in ``[act_lo, act_hi]`` and its weights on row ``i`` have either sign."""
        block = self._block(len(self.W) - 1, i)[0]  # weights of f_i on its own row's units
        c = self.C[-1][:, i]
        top = torch.where(block > 0, block * self.act_hi, block * self.act_lo).sum()
        bottom = torch.where(block > 0, block * self.act_lo, block * self.act_hi).sum()
        return self.keep * (c + bottom), self.keep * (c + top)

    def limits(self, i: int, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``lim y_i`` as ``x_i -> -inf`` and ``+inf`` given the solved rows, shape (n,)."""
        if self.leak > 0:
            inf = torch.full((n,), math.inf, dtype=like.dtype, device=like.device)
            return -inf, inf
        return self.f_limits(i, n, like)

    def saturation_bracket(self, i: int) -> tuple[Tensor, Tensor]:
        """``x_i`` beyond which every first-layer unit of row ``i`` is saturated."""
        a0 = self.a[0]
        w = self._block(0, i)[:, 0]
        c = self.C[0][:, i * a0 : (i + 1) * a0]
        # tanh(t) rounds to +-1 for |t| > ~0.5 log(4 / eps); a margin of 2 on top.
        t = 0.5 * math.log(4.0 / torch.finfo(c.dtype).eps) + 2.0
        return ((-t - c) / w).amin(-1), ((t - c) / w).amax(-1)

    def commit(self, i: int, inputs: list[Tensor]) -> None:
        """Add row ``i``'s contribution to the pre-activations of rows ``> i``."""
        for layer, u in enumerate(inputs):
            a, b = self.a[layer], self.b[layer]
            cols = self.W[layer][(i + 1) * a :, i * b : (i + 1) * b]
            self.C[layer][:, (i + 1) * a :] += u @ cols.T


@torch.no_grad()
def invert_flow(
    flow: BlockFlow,
    y: Tensor,
    xtol: float | None = None,
    max_iter: int = 100,
    solver: _RowSolver | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Solve ``flow(x) = y`` for ``x``, dimension by dimension; returns ``x``, ``inside``,
    ``converged`` and the evaluations per point and dimension (n, d) (rows outside the range
    hold meaningless values). ``solver``: the row evaluator (default: ``flow``'s weights).
    """
    n, d = y.shape
    tol_scale = default_xtol(y.dtype) if xtol is None else xtol
    solver = _RowSolver(flow, n, y) if solver is None else solver
    x = torch.zeros_like(y)
    inside = torch.ones(n, dtype=torch.bool, device=y.device)
    converged = torch.ones_like(inside)
    evals = torch.zeros(n, d, dtype=torch.long, device=y.device)
    bounded = math.isfinite(solver.act_lo) and math.isfinite(solver.act_hi)
    for i in range(d):
        yi = y[:, i]
        lo_lim, hi_lim = solver.limits(i, n, y)
        inside &= (lo_lim < yi) & (yi < hi_lim)  # False for NaN too
        ok = inside.clone()  # points found outside at an earlier row are not solved further
        count = torch.zeros(n, dtype=torch.long, device=y.device)
        if bounded and solver.leak == 0:
            lo, hi = solver.saturation_bracket(i)
        else:
            if bounded:  # y = keep f + leak x with keep f in (f_lo, f_hi): x is bracketed
                f_lo, f_hi = solver.f_bounds(i)
                lo, hi = (yi - f_hi) / solver.leak, (yi - f_lo) / solver.leak
            else:  # LeakyReLU: unbounded f, so widen a bracket around 0 until it holds
                lo, hi = torch.full_like(yi, -1.0), torch.ones_like(yi)
                lo, hi, count = _expand(solver, i, yi, lo, hi, ok, count)
        xi, done, count = _rtsafe(solver, i, yi, lo, hi, ok, tol_scale, max_iter, count)
        converged &= done | ~ok
        xi = torch.where(ok, xi, 0.5 * (lo + hi).nan_to_num(0.0))
        x[:, i] = xi
        evals[:, i] = count
        _, _, inputs = solver.evaluate(i, xi)
        solver.commit(i, inputs)
    return x, inside, converged, evals


def _expand(
    solver: _RowSolver, i: int, y: Tensor, lo: Tensor, hi: Tensor, ok: Tensor, count: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Widen ``[lo, hi]`` by doubling until ``y_i(lo) <= y <= y_i(hi)``."""
    width = (hi - lo).clamp_min(1.0)
    pending = ok
    for _ in range(1100):  # 2^1100 > the largest float64
        g_lo, _, _ = solver.evaluate(i, lo)
        g_hi, _, _ = solver.evaluate(i, hi)
        count = count + 2 * pending
        low, high = ok & (g_lo > y), ok & (g_hi < y)
        pending = low | high
        if not bool(pending.any()):
            break
        # A failed end is still a valid bound on the other side.
        lo, hi = torch.where(low, lo - width, lo), torch.where(low, lo, hi)
        lo, hi = torch.where(high, hi, lo), torch.where(high, hi + width, hi)
        width = width * 2
    return lo, hi, count


def _rtsafe(
    solver: _RowSolver,
    i: int,
    y: Tensor,
    lo: Tensor,
    hi: Tensor,
    ok: Tensor,
    tol_scale: float,
    max_iter: int,
    count: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Safeguarded Newton/bisection on ``y_i(x) = y`` within ``[lo, hi]``, batched."""
    x_out = 0.5 * (lo + hi)
    done_out = ~ok
    # Work on the unsolved points only: they become few after a handful of iterations.
    idx = ok.nonzero().squeeze(1)
    rows = [r[idx] for r in solver.row_constants(i)]
    y, lo, hi, x = y[idx], lo[idx], hi[idx], x_out[idx]
    dx = dx_old = hi - lo
    evals = torch.zeros_like(idx)
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        g, dg, _ = solver.evaluate(i, x, rows)
        evals += 1
        f = g - y
        lo, hi = torch.where(f < 0, x, lo), torch.where(f > 0, x, hi)
        newton = x - f / dg
        use_newton = (
            (dg > 0) & (newton >= lo) & (newton <= hi) & ((2 * f).abs() <= (dx_old * dg).abs())
        )
        x_new = torch.where(use_newton, newton, 0.5 * (lo + hi))
        x_new = torch.where(f == 0, x, x_new)
        dx_old, dx, x = dx, x_new - x, x_new
        # Solved once the step just taken, or the bracket, is within tolerance.
        tol = tol_scale * (1.0 + x.abs())
        fin = (f == 0) | (dx.abs() <= tol) | (hi - lo <= tol)
        if bool(fin.any()):
            x_out[idx[fin]] = x[fin]
            done_out[idx[fin]] = True
            count[idx[fin]] += evals[fin]
            keep = ~fin
            idx, x, lo, hi, y = idx[keep], x[keep], lo[keep], hi[keep], y[keep]
            dx, dx_old, evals = dx[keep], dx_old[keep], evals[keep]
            rows = [r[keep] for r in rows]
    x_out[idx] = x  # did not converge within max_iter: best estimate, flagged
    count[idx] += evals
    return x_out, done_out, count


@torch.no_grad()
def invert(
    model: Stack, z: Tensor, xtol: float | None = None, max_iter: int = 100, stop: int = 0
) -> InverseResult:
    r"""Invert the B-NAF stack: ``x = f^{-1}(z)``, flow by flow from the last.

    Arguments:
        model: the stack.
        z: points of shape ``(n, d)`` (converted to the model's dtype and device).
        xtol: tolerance of each coordinate, relative to ``1 + |x_i|``; see
            :func:`default_xtol`.
        max_iter: root-search iterations per coordinate before giving up (``converged``).
        stop: invert ``model.transforms[stop:]`` only (used by ``bnaf.flows.sampling.in_range``).
    """
    param = next(model.parameters())
    if z.dim() != 2 or z.shape[1] != model.dim:
        raise BnafError(f"expected points of shape (n, {model.dim}), got {tuple(z.shape)}")
    y = z.to(dtype=param.dtype, device=param.device)
    n = y.shape[0]
    inside = torch.ones(n, dtype=torch.bool, device=y.device)
    converged = torch.ones_like(inside)
    means, maxes = [], []
    for t in reversed(list(model.transforms)[stop:]):
        if isinstance(t, Permutation):
            y = t.inverse(y)
            continue
        y, ok, conv, evals = invert_flow(t, y, xtol, max_iter)
        inside &= ok
        converged &= conv
        means.append(evals.double().mean(0) if n else evals.double().sum(0))
        maxes.append(evals.amax(0) if n else evals.sum(0))
    x = torch.where(inside[:, None], y, torch.full_like(y, math.nan))
    return InverseResult(x, inside, converged & inside, torch.stack(means), torch.stack(maxes))


def invert_checked(
    model: Stack, z: Tensor, outside: OutsideMode = "raise", xtol: float | None = None
) -> Tensor | tuple[Tensor, Tensor]:
    r""":func:`invert` for ``BNAF.inverse``: ``x``, or ``(x, inside)`` with ``outside="mask"``.

    With ``outside="raise"`` a point outside the range (or not finite) raises
    :class:`~bnaf.core.errors.BnafError` naming how many; a coordinate that did not meet the
    tolerance within the iteration budget raises too (``invert`` reports it in ``converged``).
    """
    if outside not in ("raise", "mask"):
        raise ValueError(f"unknown outside {outside!r}; expected 'raise' or 'mask'")
    res = invert(model, z, xtol=xtol)
    if outside == "mask":
        return res.x, res.inside
    n_out = int((~res.inside).sum())
    if n_out:
        raise BnafError(
            f"{n_out} of {len(res.inside)} points lie outside the flow's range (or are not "
            "finite): a flow with tanh and no residual maps onto a bounded set; use "
            "outside='mask' to invert the others"
        )
    n_bad = int((~res.converged).sum())
    if n_bad:
        raise BnafError(f"the root search did not converge for {n_bad} points")
    return res.x
