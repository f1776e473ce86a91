r"""A masked block layer's product that skips the structural zeros above the block diagonal.

A B-NAF weight ``W`` (Eq. 7-8) is lower block-triangular: output dimension ``i`` sees input
dimensions ``0..i`` only, so about half of a large hidden weight is zeros that a dense product
multiplies anyway. Here the rows are cut into a few *panels* of consecutive block rows
``[i0, i1)``; a panel's outputs see only the inputs of dimensions ``[0, i1)``, so it multiplies
the ``(i1 - i0) a x i1 b`` part of ``W`` it can see: with ``P`` equal panels the products do
``(P + 1) / 2P`` of the dense work, forward and backward. The weight normalisation of Appendix C
(``w = exp(s) v / ||v||`` per row, ``v = exp(B)`` on the diagonal blocks) is done per panel in
the same node, so no pass over the zero blocks remains; their gradient is written as exact
zeros. Only the panel's diagonal corner, ``(i1 - i0) a x (i1 - i0) b``, still holds zeros.

:func:`panels_for` decides when this pays (large layers on CPU); otherwise the layer keeps the
dense product. Forward and backward form one autograd node (first derivatives only), equal to
the dense masked product up to rounding (``tests/test_blocksparse.py``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["block_sparse_linear", "panel_bounds", "panels_for"]

#: Layers with fewer weight entries than this keep the dense product: below it the panels'
#: extra calls cost more than the skipped work saves (measured on CPU, benchmarks/README.md).
MIN_ENTRIES = 1 << 19
#: Panel counts by weight size (entries): more panels skip more zeros, each costs a few calls.
_PANELS = ((1 << 22, 8), (1 << 20, 6), (MIN_ENTRIES, 4))


def panels_for(dim: int, out_features: int, in_features: int, device: torch.device) -> int:
    r"""How many row panels the product of a ``(out_features, in_features)`` masked weight with
    ``dim`` block rows should use; 1 means the dense product.

    Only on CPU: on a GPU these products take microseconds and every panel adds kernel
    launches, so the dense product is kept there (not measured yet).
    """
    entries = out_features * in_features
    if device.type != "cpu" or dim < 4 or entries < MIN_ENTRIES:
        return 1
    return min(dim, next(p for size, p in _PANELS if entries >= size))


def panel_bounds(dim: int, panels: int) -> list[tuple[int, int]]:
    r"""Block-row ranges ``[(i0, i1), ...]`` of ``panels`` near-equal panels covering ``0..dim``.

    Equal heights minimise the covered area of a staircase over a triangle for a given count.
    """
    cuts = [round(p * dim / panels) for p in range(panels + 1)]
    return [(i0, i1) for i0, i1 in zip(cuts[:-1], cuts[1:]) if i1 > i0]


def _diagonal(t: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """The ``(d, a, b)`` diagonal blocks of a ``(d a, d b)`` matrix, as a strided view."""
    d, a, b = shape
    cols = t.stride(0)
    return t.as_strided((d, a, b), (a * cols + b, cols, 1), t.storage_offset())


@lru_cache(maxsize=64)
def _keep(blocks: int, a: int, b: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    r"""``1`` on and below the block diagonal of a panel's ``(blocks a, blocks b)`` corner, ``0``
    above: multiplying by it is several times faster than ``masked_fill_`` on a strided view.
    A corner holds only finite numbers (weights never trained there, or a gradient), so the
    product is the masked value; a non-finite weight would show as NaN, never as a number."""
    row = torch.arange(blocks * a, device=device) // a
    col = torch.arange(blocks * b, device=device) // b
    return (row[:, None] >= col[None, :]).to(dtype)


class _BlockSparseLinear(torch.autograd.Function):
    r"""``(x W^T + bias, log diagonal blocks)`` with ``W`` weight-normalised and masked
    (Eq. 8, Appendix C), product and normalisation done panel by panel.

    ``W = diag(exp(log_row)) v`` is never formed: each panel copies the part of ``v`` it can
    see, ``(i1 - i0) a x i1 b`` (the weight left of its corner, and the corner with zeros above
    and ``exp`` on its diagonal blocks), into one contiguous matrix; that matrix gives the rows'
    norms and one product forward and one per gradient backward, and the ``(batch, rows)``
    result is scaled, which saves a pass over the weight forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, log_scale, bias, shape, bounds):  # type: ignore[override]
        d, a, b = shape
        n, out_features = x.shape[0], weight.shape[0]
        diag_exp = _diagonal(weight, shape).exp()  # v = exp(B) on the diagonal blocks
        panels, norms = [], []
        for i0, i1 in bounds:  # the v each panel sees, contiguous (a copy is cheap next to
            rows, cols = slice(i0 * a, i1 * a), slice(i0 * b, i1 * b)  # the products it saves)
            v = weight[rows, : i1 * b].clone(memory_format=torch.contiguous_format)
            corner = v[:, cols].mul_(_keep(i1 - i0, a, b, v.dtype, v.device))
            _diagonal(corner, (i1 - i0, a, b)).copy_(diag_exp[i0:i1])
            panels.append(v)
            norms.append(torch.linalg.vector_norm(v, dim=1))  # ||v|| over what the row sees
        norm = torch.cat(norms).view(out_features, 1)
        log_row = log_scale - norm.log()  # log of exp(s) / ||v||
        scale = log_row.exp()
        xv = x.new_empty(n, out_features)  # x v^T, kept for the backward
        for (i0, i1), v in zip(bounds, panels):
            torch.mm(x[:, : i1 * b], v.t(), out=xv[:, i0 * a : i1 * a])
        scale_t = scale.view(1, -1)
        y = xv * scale_t if bias is None else torch.addcmul(bias, xv, scale_t)
        log_diag = _diagonal(weight, shape) + log_row.view(d, a, 1)
        ctx.save_for_backward(x, xv, scale, norm, diag_exp, *panels)
        ctx.shape, ctx.bounds, ctx.has_bias = shape, bounds, bias is not None
        return y, log_diag

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_diag):  # type: ignore[override]
        x, xv, scale, norm, diag_exp, *panels = ctx.saved_tensors
        (d, a, b), bounds = ctx.shape, ctx.bounds
        need_x, need_w, need_s, need_bias = ctx.needs_input_grad[:4]
        # d / d log_row, through W = diag(exp(log_row)) v and through log_diag. The first
        # term, sum_j (grad_y^T x)_ij W_ij, equals sum_n grad_y_ni (x W^T)_ni: a pass over
        # (batch, out) instead of one over the weight.
        grad_row = (grad_y * xv).sum(0).unsqueeze(-1).mul_(scale)
        grad_row += grad_diag.sum(-1).reshape(-1, 1)
        grad_scaled = grad_y * scale.view(1, -1)  # d / d (x v^T)
        grad_x = grad_weight = None
        if need_x:
            grad_x = torch.zeros_like(x)
            for (i0, i1), v in zip(bounds, panels):
                grad_x[:, : i1 * b].addmm_(grad_scaled[:, i0 * a : i1 * a], v)
        if need_w:
            grad_weight = panels[0].new_empty(d * a, d * b)
            coef = grad_row / norm.square()  # d log||v|| / dv = v / ||v||^2
            for (i0, i1), v in zip(bounds, panels):
                rows, cols = slice(i0 * a, i1 * a), slice(i0 * b, i1 * b)
                g = grad_weight[rows, : i1 * b]
                torch.mm(grad_scaled[:, rows].t(), x[:, : i1 * b], out=g)  # d / dv
                g.addcmul_(v, coef[rows], value=-1.0)
                g[:, cols].mul_(_keep(i1 - i0, a, b, g.dtype, g.device))
                if i1 < d:
                    grad_weight[rows, i1 * b :] = 0.0  # the zero blocks: never used
            diag = _diagonal(grad_weight, (d, a, b))
            diag.mul_(diag_exp).add_(grad_diag)  # through v = exp(B)
        grad_bias = grad_y.sum(0) if need_bias and ctx.has_bias else None
        return grad_x, grad_weight, grad_row if need_s else None, grad_bias, None, None


def block_sparse_linear(
    x: Tensor,
    weight: Tensor,
    log_scale: Tensor,
    bias: Tensor | None,
    shape: tuple[int, int, int],
    panels: int,
) -> tuple[Tensor, Tensor]:
    r"""``(x W^T + bias, log W_ii)`` of a masked block layer (Eq. 7-8, Appendix C), skipping the
    blocks above the diagonal; :meth:`bnaf.flows.layers.MaskedBlockLinear.weights` gives the
    same ``W`` densely.

    Arguments:
        x: inputs, shape ``(batch, d b)``.
        weight: the unconstrained ``B``, shape ``(d a, d b)`` (contiguous).
        log_scale: ``s``, shape ``(d a, 1)``.
        bias: shape ``(d a,)``, or ``None``.
        shape: ``(d, a, b)``.
        panels: the number of row panels (see :func:`panels_for`).

    Returns:
        The outputs ``(batch, d a)`` and the log diagonal blocks ``(d, a, b)``.
    """
    bounds = tuple(panel_bounds(shape[0], panels))
    return _BlockSparseLinear.apply(x, weight, log_scale, bias, shape, bounds)
