r"""A differentiable B-NAF inverse by the implicit function theorem (beyond the paper).

The root search of :mod:`bnaf.flows.inverse` runs without a graph. Its result ``x`` solves
``f(x; theta) = y`` for one block flow, so differentiating that identity gives

    ``dx/dy = J^{-1}``  and  ``dx/dtheta = -J^{-1} df/dtheta``,

with ``J = df/dx`` at ``x``, lower triangular for a block flow (each output depends on the
inputs up to its own index only, Eq. 7-8) with a positive diagonal. The backward pass
therefore solves one triangular system ``J^T w = grad_x`` per point and backpropagates ``-w``
through a single evaluation of ``f`` at ``x``: no iteration of the root search is ever
differentiated, and the gradients are exact up to the root search's tolerance. ``J`` is
formed from ``d`` vector-Jacobian products of that evaluation (rows are independent points).

Permutations between flows are differentiable as they are, so a stack is inverted flow by
flow with one implicit node per block flow (:func:`differentiable_invert`).

References:
    | Implicit function theorem for gradients of numerical inverses, as in FlowJAX's
    | ``RootFinder`` based inverses and Blondel et al., "Efficient and Modular Implicit
    | Differentiation" (2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bnaf.flows.inverse import InverseResult, invert_flow
from bnaf.flows.layers import Permutation, Stack

__all__ = ["differentiable_invert", "implicit_inverse", "module_map", "triangular_jacobian"]

#: ``f(x, *inputs) -> y``: the map whose inverse is differentiated
ForwardMap = Callable[..., Tensor]
#: ``(flow, per-point tensor, y) -> row evaluator`` for :func:`invert_flow`'s ``solver``
SolverFactory = Callable[[nn.Module, Tensor, Tensor], Any]


def triangular_jacobian(y: Tensor, x: Tensor) -> Tensor:
    r"""``dy/dx`` per row, shape ``(n, d, d)``, for a map that acts on each row separately;
    ``y`` must have been computed from ``x`` with a graph. One vector-Jacobian product per
    output dimension (``d`` in all), the lower triangle only being non-zero for a block flow."""
    rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0] for i in range(y.shape[1])]
    return torch.stack(rows, dim=1)


class _ImplicitInverse(torch.autograd.Function):
    r"""``x`` (precomputed, solving ``f(x, *inputs) = y``) attached to the graph of ``y`` and
    ``inputs`` with the implicit-function gradients of the module docstring."""

    @staticmethod
    def forward(ctx: Any, f: ForwardMap, x: Tensor, y: Tensor, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.f = f
        ctx.save_for_backward(x, *inputs)
        return x.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_x: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, *inputs = ctx.saved_tensors
        # Rows the search could not solve (outside the range) carry no gradient; a finite
        # stand-in keeps them from turning the shared parameters' gradients into NaN.
        good = torch.isfinite(x).all(-1, keepdim=True)
        grad_x = torch.where(good, grad_x, 0.0)
        with torch.enable_grad():
            xr = torch.where(good, x, 0.0).detach().requires_grad_()
            ins = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
            y = ctx.f(xr, *ins)
            jac = triangular_jacobian(y, xr)
            # J^T w = grad_x, J lower triangular: an upper-triangular solve per point
            w = torch.linalg.solve_triangular(
                jac.transpose(1, 2), grad_x.unsqueeze(-1), upper=True
            ).squeeze(-1)
            w = torch.where(good, w, 0.0)
            wanted = [t for t in ins if t.requires_grad]
            grads = iter(
                torch.autograd.grad(y, wanted, grad_outputs=-w, allow_unused=True)
                if wanted
                else []
            )
        grad_inputs = [next(grads) if t.requires_grad else None for t in ins]
        return (None, None, w, *grad_inputs)


def implicit_inverse(f: ForwardMap, x: Tensor, y: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    r"""Attach the solution ``x`` of ``f(x, *inputs) = y`` to the graph of ``y`` and ``inputs``.

    Arguments:
        f: the forward map, row-wise, with a lower-triangular Jacobian ``df/dx`` with a
            non-zero diagonal; it must use the tensors it is given in ``inputs`` (see
            :func:`module_map`).
        x: the solution, computed without a graph (rows that are not finite get no gradient).
        y: the right-hand side, shape ``(n, d)``.
        inputs: the other tensors ``f`` depends on (parameters, per-point conditioning).

    Returns:
        ``x``, whose gradients are ``dx/dy = J^{-1}`` and ``dx/dinputs = -J^{-1} df/dinputs``.
    """
    if not torch.is_grad_enabled() or not (
        y.requires_grad or any(t.requires_grad for t in inputs)
    ):
        return x
    return _ImplicitInverse.apply(f, x.detach(), y, *inputs)


def module_map(module: nn.Module) -> tuple[ForwardMap, list[Tensor]]:
    r"""``(f, params)`` with ``f(x, *params, *extra) = module(x, *extra)[0]`` evaluated with the
    given parameter tensors (:func:`torch.func.functional_call`), for :func:`implicit_inverse`."""
    named = list(module.named_parameters())
    names, params = [n for n, _ in named], [p for _, p in named]

    def f(x: Tensor, *args: Tensor) -> Tensor:
        values = dict(zip(names, args[: len(names)]))
        return torch.func.functional_call(module, values, (x, *args[len(names) :]))[0]

    return f, params


def differentiable_invert(
    model: Stack,
    z: Tensor,
    xtol: float | None = None,
    max_iter: int = 100,
    per_flow: Sequence[Tensor | None] | None = None,
    make_solver: SolverFactory | None = None,
) -> InverseResult:
    r""":func:`bnaf.flows.inverse.invert` with gradients with respect to ``z`` and to the
    model's parameters (one implicit node per block flow). Rows outside the range are NaN
    and get no gradient; ``iterations`` and ``max_iterations`` are as in ``invert``.

    For a conditional stack, ``per_flow`` holds, per entry of ``model.transforms``, the
    per-point tensor its block flow takes as second argument (``None`` for permutations);
    ``make_solver(flow, that tensor, y)`` builds the row evaluator of the root search, and
    the tensor gets implicit gradients too.
    """
    param = next(model.parameters())
    y = z.to(dtype=param.dtype, device=param.device)
    inside = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    converged = torch.ones_like(inside)
    means, maxes = [], []
    extras = [None] * len(model.transforms) if per_flow is None else list(per_flow)
    for t, extra in reversed(list(zip(model.transforms, extras))):
        if isinstance(t, Permutation):
            y = t.inverse(y)
            continue
        target = y.detach()
        solver = None
        if extra is not None and make_solver is not None:
            with torch.no_grad():
                solver = make_solver(t, extra.detach(), target)
        x, ok, conv, evals = invert_flow(t, target, xtol, max_iter, solver=solver)
        f, params = module_map(t)
        y = implicit_inverse(f, x, y, params if extra is None else [*params, extra])
        inside &= ok
        converged &= conv
        means.append(evals.double().mean(0) if len(y) else evals.double().sum(0))
        maxes.append(evals.amax(0) if len(y) else evals.sum(0))
    x = torch.where(inside[:, None], y, math.nan)
    return InverseResult(x, inside, converged & inside, torch.stack(means), torch.stack(maxes))
