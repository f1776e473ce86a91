r"""Fused log-Jacobian kernels of the B-NAF flow (Eq. 10-11, 15; Appendix D).

Each is one autograd node with a hand-written backward, which on CPU saves most of the passes
over ``(batch, d, k)`` tensors that autograd's chain of small element-wise operations makes.
:mod:`bnaf.flows.layers` uses them; its tests check them against plain autograd.

Where the fast linear-domain product nears underflow the exact log-domain one takes over. On
the CPU that choice is made on the host (reading a CPU tensor costs nothing); on a GPU reading
the flag would stall the host once per layer, so there both are computed and the choice is made
per entry on the device (:func:`decide_on_host`, :func:`fallback_decision`). The exact product
is computed in chunks of the batch, so its ``(batch, d, p, q)`` temporaries stay bounded.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "EXACT_CHUNK_ELEMENTS",
    "decide_on_host",
    "deferred",
    "exact_log_matvec",
    "fallback_decision",
    "log_matvec",
    "masked_weights",
    "tanh_derivative",
    "tanh_log_derivative",
]

_LOG2 = math.log(2.0)

#: Most entries of one ``(rows, d, p, q)`` temporary of the exact log-domain product: 2^24
#: (64 MB in float32). BSDS300, H = 40d at a 10,000-row evaluation batch would otherwise
#: build 10^9-entry (4 GB) temporaries.
EXACT_CHUNK_ELEMENTS = 1 << 24

Where = Literal["auto", "host", "device", "deferred"]
_where: list[Where] = ["auto"]


@contextlib.contextmanager
def fallback_decision(where: Where) -> Iterator[None]:
    r"""Within the block, decide the fast-vs-exact fallback on the ``"host"`` (one branch,
    a sync per layer on a GPU), on the ``"device"`` (both computed, no sync) or ``"auto"``
    (host for CPU tensors, device otherwise: the default). For tests and benchmarks.

    ``"deferred"``, for a traced graph (which cannot branch on a value): the scaled chain
    gives NaN where it cannot be exact, for the caller to recompute eagerly
    (:mod:`bnaf.flows.compiled`); a lone :func:`log_matvec` decides on the device."""
    if where not in ("auto", "host", "device", "deferred"):
        raise ValueError(
            f"unknown fallback decision {where!r}; expected auto, host, device or deferred"
        )
    _where.append(where)
    try:
        yield
    finally:
        _where.pop()


def decide_on_host(t: Tensor) -> bool:
    r"""Whether the fallback for ``t`` is chosen by reading a flag on the host."""
    where = _where[-1]
    return t.device.type == "cpu" if where == "auto" else where == "host"


def deferred() -> bool:
    r"""Whether the scaled chain's fallback is left to the caller (``"deferred"``)."""
    return _where[-1] == "deferred"


def _rows(log_a: Tensor, n: int) -> int:
    r"""Rows of the batch per chunk of the exact product (at least one)."""
    return max(1, min(n, EXACT_CHUNK_ELEMENTS // max(1, log_a.numel())))


def exact_log_matvec(log_a: Tensor, log_g: Tensor) -> Tensor:
    r"""``logsumexp_q(log_a[i, p, q] + log_g[n, i, q])`` (Eq. 15e) in chunks of the batch:
    exact for any spread of the terms, with temporaries of at most
    :data:`EXACT_CHUNK_ELEMENTS` entries (one of ``(rows, d, p, q)``)."""
    n = log_g.shape[0]
    step = _rows(log_a, n)
    parts = [
        torch.logsumexp(log_a.unsqueeze(0) + log_g[i : i + step].unsqueeze(-2), dim=-1)
        for i in range(0, n, step)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _exact_grads(
    log_a: Tensor, log_g: Tensor, out: Tensor, grad: Tensor, need_a: bool, need_g: bool
) -> tuple[Tensor | None, Tensor | None]:
    r"""Gradients of :func:`exact_log_matvec` (softmax weights ``exp(log_a + log_g - out)``
    times ``grad``), chunked over the batch like the forward."""
    n = log_g.shape[0]
    step = _rows(log_a, n)
    grad_a = torch.zeros_like(log_a) if need_a else None
    parts: list[Tensor] = []
    for i in range(0, n, step):
        sl = slice(i, i + step)
        w = torch.exp(log_a.unsqueeze(0) + log_g[sl].unsqueeze(-2) - out[sl].unsqueeze(-1))
        w.mul_(grad[sl].unsqueeze(-1))  # (rows, d, p, q)
        if grad_a is not None:
            grad_a += w.sum(0)
        if need_g:
            parts.append(w.sum(-2))
    grad_g = (parts[0] if len(parts) == 1 else torch.cat(parts)) if need_g else None
    return grad_a, grad_g


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
        ctx.host = decide_on_host(s)
        if ctx.host:  # one branch for the whole call (reading a CPU flag costs nothing)
            ctx.fast = bool((s > floor).all())
            if ctx.fast:
                ctx.save_for_backward(exp_a, exp_g, s)
                return torch.log(s).add_(max_g).add_(max_a.squeeze(-1))
            out = exact_log_matvec(log_a, log_g)
            ctx.save_for_backward(log_a, log_g, out)
            return out
        # On the device: both products, the exact one wherever the fast one nears underflow.
        ok = s > floor
        fast = torch.log(torch.where(ok, s, 1.0)).add_(max_g).add_(max_a.squeeze(-1))
        out = torch.where(ok, fast, exact_log_matvec(log_a, log_g))
        ctx.save_for_backward(exp_a, exp_g, s, ok, log_a, log_g, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        need_a, need_g = ctx.needs_input_grad
        if ctx.host and not ctx.fast:
            log_a, log_g, out = ctx.saved_tensors
            return _exact_grads(log_a, log_g, out, grad, need_a, need_g)
        if ctx.host:
            exp_a, exp_g, s = ctx.saved_tensors
            r = grad / s  # (n, d, p); d out / d s = 1 / s
        else:  # each entry's gradient from the product that gave its value
            exp_a, exp_g, s, ok, log_a, log_g, out = ctx.saved_tensors
            r = torch.where(ok, grad / s, 0.0)
        grad_a = grad_g = None
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
        if not ctx.host:
            rest = torch.where(ok, 0.0, grad)
            extra_a, extra_g = _exact_grads(log_a, log_g, out, rest, need_a, need_g)
            grad_a = grad_a + extra_a if extra_a is not None else grad_a
            grad_g = grad_g + extra_g if extra_g is not None else grad_g
        return grad_a, grad_g


def log_matvec(log_a: Tensor, log_g: Tensor) -> Tensor:
    r"""Log-domain product of diagonal blocks with a batch of log-vectors (Eq. 11, Eq. 15c).

    Computes ``out[n, i, p] = log sum_q exp(log_a[i, p, q] + log_g[n, i, q])``.

    The stable log-sum-exp of Eq. 15e subtracts the maximum of each sum. We split that
    maximum into a maximum over ``q`` of ``log_a`` and one of ``log_g``; both factors are then
    at most 1 and their product becomes a batched matrix product instead of a
    ``(batch, d, p, q)`` tensor of exponentials. If a sum nevertheless comes close to
    underflow (weights within one block row spread by more than ~70 nats), the exact
    log-sum-exp (:func:`exact_log_matvec`, chunked over the batch) is used: for the whole call
    when the choice is made on the host, per entry when it is made on the device (see
    :func:`fallback_decision`). Forward and backward form one autograd node (first derivatives
    only).

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


def _diagonal_blocks(
    weight: Tensor, shape: tuple[int, int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    r"""Size and strides of the strided view of the ``(d, a, b)`` diagonal blocks of a
    contiguous ``(d a, d b)`` weight, or ``([M,] d, a, b)`` of a pack's ``(M, d a, d b)``."""
    d, a, b = shape
    cols = weight.shape[-1]
    size, stride = (d, a, b), (a * cols + b, cols, 1)
    if weight.dim() == 3:  # a pack (bnaf.flows.pack): one weight per member
        return (weight.shape[0], *size), (weight.shape[1] * cols, *stride)
    return size, stride


class _MaskedWeights(torch.autograd.Function):
    r"""Weight-normalised masked weight and the log of its diagonal blocks (Eq. 8, App. C):
    ``v = exp(B)`` on the diagonal blocks, ``B`` below, 0 above; ``w = exp(s) v / ||v||``
    row-wise; ``log w`` on the diagonal blocks ``= B + s - log ||v||``. One node; the
    exponential is taken on the diagonal blocks only, reached through a strided view."""

    @staticmethod
    def forward(ctx, weight, log_scale, mask_o, shape):  # type: ignore[override]
        size, stride = _diagonal_blocks(weight, shape)
        v = weight * mask_o
        v.as_strided(size, stride).copy_(weight.as_strided(size, stride).exp())
        log_norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True).log_()
        log_row = log_scale - log_norm  # ([M,] out, 1): log of exp(s) / ||v||
        scale = log_row.exp()
        w = v * scale
        log_diag = weight.as_strided(size, stride) + log_row.view(*size[:-1], 1)
        ctx.save_for_backward(v, w, scale, log_norm, mask_o)
        ctx.shape, ctx.stride = size, stride
        return w, log_diag

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_w, grad_diag):  # type: ignore[override]
        v, w, scale, log_norm, mask_o = ctx.saved_tensors
        shape, stride = ctx.shape, ctx.stride
        # the strided views below assume a contiguous layout; a pack's batched product
        # hands back a transposed gradient, which element-wise results would inherit
        grad_w = grad_w.contiguous()
        # d / d log_row: through w = v exp(log_row) and through log_diag
        grad_row = (grad_w * w).sum(-1, keepdim=True)
        grad_row += grad_diag.sum(-1).reshape(grad_row.shape)
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
    blocks below the diagonal, ``shape = (d, a, b)``. A pack's weights ``(M, d a, d b)`` and
    log-scales ``(M, d a, 1)`` give ``(M, d a, d b)`` and ``(M, d, a, b)``."""
    return _MaskedWeights.apply(weight, log_scale, mask_o, shape)


def tanh_log_derivative(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(tanh x, log tanh'(x))``, finite for any ``x``."""
    return _TanhLogDerivative.apply(x)


def tanh_derivative(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(tanh x, tanh'(x))``."""
    return _TanhDerivative.apply(x)
