r"""Fused log-Jacobian kernels of the B-NAF flow (Eq. 10-11, 15; Appendix D).

Each is one autograd node with a hand-written backward, which on CPU saves most of the passes
over ``(batch, d, k)`` tensors that autograd's chain of small element-wise operations makes.
:mod:`bnaf.flows.layers` uses them; its tests check them against plain autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["log_matvec", "masked_weights", "tanh_derivative", "tanh_log_derivative"]

_LOG2 = math.log(2.0)


class _LogMatVec(torch.autograd.Function):
    r"""Forward and backward of :func:`log_matvec` as one autograd node: fewer passes over
    the ``(batch, d, q)`` tensors than autograd's chain of exp, bmm and log. With ``p = 1``
    (a flow's last layer) the product is an element-wise multiply and sum, which on CPU is
    much faster than ``d`` tiny matrix products."""

    @staticmethod
    def forward(ctx, log_a: Tensor, log_g: Tensor) -> Tensor:  # type: ignore[override]
        max_a = log_a.amax(-1, keepdim=True)  # (d, p, 1)
        max_g = log_g.amax(-1, keepdim=True)  # (n, d, 1)
        exp_a = torch.exp(log_a - max_a)  # entries in (0, 1]
        exp_g = torch.exp(log_g - max_g)  # (n, d, q)
        ctx.vector = log_a.shape[1] == 1
        if ctx.vector:
            s = (exp_g * exp_a.squeeze(1)).sum(-1, keepdim=True)  # (n, d, 1)
        else:  # (d, n, q) @ (d, q, p) -> (d, n, p) -> (n, d, p)
            s = torch.bmm(exp_g.transpose(0, 1), exp_a.transpose(1, 2)).transpose(0, 1)
        floor = torch.finfo(s.dtype).tiny / torch.finfo(s.dtype).eps
        ctx.fast = bool((s > floor).all())
        if ctx.fast:
            ctx.save_for_backward(exp_a, exp_g, s)
            return torch.log(s).add_(max_g).add_(max_a.squeeze(-1))
        out = torch.logsumexp(log_a.unsqueeze(0) + log_g.unsqueeze(-2), dim=-1)
        ctx.save_for_backward(log_a, log_g, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        need_a, need_g = ctx.needs_input_grad
        grad_a = grad_g = None
        if ctx.fast:
            exp_a, exp_g, s = ctx.saved_tensors
            r = grad / s  # (n, d, p); d out / d s = 1 / s
            if ctx.vector:
                if need_a:
                    grad_a = (r * exp_g).sum(0).unsqueeze(1).mul_(exp_a)
                if need_g:
                    grad_g = r * exp_a.squeeze(1) * exp_g
            else:
                r = r.transpose(0, 1)  # (d, n, p)
                if need_a:
                    grad_a = torch.bmm(r.transpose(1, 2), exp_g.transpose(0, 1)).mul_(exp_a)
                if need_g:
                    grad_g = torch.bmm(r, exp_a).transpose(0, 1).mul(exp_g)
        else:
            log_a, log_g, out = ctx.saved_tensors
            # each sum's softmax weights exp(log_a + log_g - out), shape (n, d, p, q)
            w = torch.exp(log_a.unsqueeze(0) + log_g.unsqueeze(-2) - out.unsqueeze(-1))
            w = w * grad.unsqueeze(-1)
            grad_a = w.sum(0) if need_a else None
            grad_g = w.sum(-2) if need_g else None
        return grad_a, grad_g


def log_matvec(log_a: Tensor, log_g: Tensor) -> Tensor:
    r"""Log-domain product of diagonal blocks with a batch of log-vectors (Eq. 11, Eq. 15c).

    Computes ``out[n, i, p] = log sum_q exp(log_a[i, p, q] + log_g[n, i, q])``.

    The stable log-sum-exp of Eq. 15e subtracts the maximum of each sum. We split that
    maximum into a maximum over ``q`` of ``log_a`` and one of ``log_g``; both factors are then
    at most 1 and their product becomes a batched matrix product instead of a
    ``(batch, d, p, q)`` tensor of exponentials. If a sum nevertheless comes close to
    underflow (weights within one block row spread by more than ~70 nats), the exact
    log-sum-exp is used for the whole call. Forward and backward form one autograd node
    (first derivatives only).

    Arguments:
        log_a: log diagonal blocks of a layer's weight, shape ``(d, p, q)``.
        log_g: log diagonal blocks of the Jacobian so far, shape ``(batch, d, q)``.

    Returns:
        The log diagonal blocks of the product, shape ``(batch, d, p)``.
    """
    return _LogMatVec.apply(log_a, log_g)


class _TanhLogDerivative(torch.autograd.Function):
    r"""``(tanh x, log tanh'(x))`` as one autograd node; the backward needs only ``y = tanh x``:
    ``d tanh / dx = 1 - y^2`` and ``d log tanh' / dx = -2 y``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        # Both from e = exp(-2|x|) in (0, 1]: tanh x = sign(x) (1 - e) / (1 + e) and
        # log tanh'(x) = 2 (log 2 - |x| - log1p(e)). Exact for any x (e never overflows), and
        # on CPU about twice as fast as torch.tanh plus a softplus.
        a = x.abs()
        e = torch.exp(a * -2.0)
        y = torch.copysign((1.0 - e) / (1.0 + e), x)
        log_d = torch.log1p(e).add_(a).sub_(_LOG2).mul_(-2.0)
        ctx.save_for_backward(y, log_d)
        return y, log_d

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_log_d: Tensor) -> Tensor:  # type: ignore[override]
        y, log_d = ctx.saved_tensors
        # tanh' = exp(log_d), exact where 1 - y^2 would round to 0
        return grad_y * torch.exp(log_d) - 2.0 * grad_log_d * y


class _TanhDerivative(torch.autograd.Function):
    r"""``(tanh x, tanh'(x))`` as one autograd node, from ``s = sigmoid(-2|x|)`` in (0, 1/2]:
    ``tanh x = sign(x) (1 - 2 s)`` and ``tanh'(x) = 4 s (1 - s)`` (no cancellation, unlike
    ``1 - tanh^2``); ``d tanh' / dx = -2 y y'``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        # few, fused element-wise calls: each is a parallel region on a (batch, d k) tensor
        s = torch.sigmoid(x.abs().mul_(-2.0))
        y = torch.copysign(torch.rsub(s, 1.0, alpha=2.0), x)
        d = torch.addcmul(s, s, s, value=-1.0).mul_(4.0)
        ctx.save_for_backward(y, d)
        return y, d

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_d: Tensor) -> Tensor:  # type: ignore[override]
        y, d = ctx.saved_tensors
        return torch.addcmul(grad_y, y, grad_d, value=-2.0).mul_(d)


class _MaskedWeights(torch.autograd.Function):
    r"""Weight-normalised masked weight and the log of its diagonal blocks (Eq. 8, App. C):
    ``v = exp(B)`` on the diagonal blocks, ``B`` below, 0 above; ``w = exp(s) v / ||v||``
    row-wise; ``log w`` on the diagonal blocks ``= B + s - log ||v||``. One node; the
    exponential is taken on the diagonal blocks only, reached through a strided view."""

    @staticmethod
    def forward(ctx, weight, log_scale, mask_o, shape):  # type: ignore[override]
        d, a, b = shape
        stride = (a * weight.shape[1] + b, weight.shape[1], 1)
        v = weight * mask_o
        v.as_strided((d, a, b), stride).copy_(weight.as_strided((d, a, b), stride).exp())
        log_norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True).log_()
        log_row = log_scale - log_norm  # (out, 1): log of exp(s) / ||v||
        scale = log_row.exp()
        w = v * scale
        log_diag = weight.as_strided((d, a, b), stride) + log_row.view(d, a, 1)
        ctx.save_for_backward(v, w, scale, log_norm, mask_o)
        ctx.shape, ctx.stride = (d, a, b), stride
        return w, log_diag

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_w, grad_diag):  # type: ignore[override]
        v, w, scale, log_norm, mask_o = ctx.saved_tensors
        shape, stride = ctx.shape, ctx.stride
        # d / d log_row: through w = v exp(log_row) and through log_diag
        grad_row = (grad_w * w).sum(-1, keepdim=True)
        grad_row += grad_diag.sum(-1).reshape(-1, 1)
        # d / dv: direct, and through log ||v|| (d log||v|| / dv = v / ||v||^2)
        grad_v = grad_w * scale - v * (grad_row * torch.exp(-2.0 * log_norm))
        grad_weight = grad_v * mask_o
        diag = grad_weight.as_strided(shape, stride)
        diag.copy_(grad_v.as_strided(shape, stride) * v.as_strided(shape, stride) + grad_diag)
        return grad_weight, grad_row, None, None


def masked_weights(
    weight: Tensor, log_scale: Tensor, mask_o: Tensor, shape: tuple[int, int, int]
) -> tuple[Tensor, Tensor]:
    r"""``(W, log diagonal blocks (d, a, b))`` of a masked block layer; ``mask_o`` marks the
    blocks below the diagonal, ``shape = (d, a, b)``."""
    return _MaskedWeights.apply(weight, log_scale, mask_o, shape)


def tanh_log_derivative(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(tanh x, log tanh'(x))``, finite for any ``x``."""
    return _TanhLogDerivative.apply(x)


def tanh_derivative(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(tanh x, tanh'(x))``."""
    return _TanhDerivative.apply(x)
