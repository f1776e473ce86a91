r"""The chain of a block flow's diagonal Jacobian blocks (Eq. 10-11, Appendix D).

A block flow ``d -> k d -> ... -> d`` keeps, per sample, only the diagonal blocks of the
Jacobian of its hidden layers with respect to its input: ``(batch, d, q)`` after a layer of
``q`` units per dimension. They are chained through the masked layers and activations either in
the log domain (:func:`chain_log`, exact for any spread) or in the linear domain with one scale
per block row (:func:`chain_scaled`, faster; it falls back to the log domain near underflow).
The functions see the layers only as products ``h -> (h W^T + b, log diagonal blocks)``, so a
single flow (:class:`bnaf.flows.layers.BlockFlow`) and a pack of them (:mod:`bnaf.flows.pack`)
share them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bnaf.flows import logjac
from bnaf.flows.logjac import log_matvec

__all__ = ["Linear", "chain", "chain_log", "chain_scaled"]

#: a masked layer's product as the chains see it: ``h -> (h W^T + b, log diagonal
#: blocks of W (d, a, b))``; a :class:`MaskedBlockLinear`, or a pack's (bnaf.flows.pack)
Linear = Callable[[Tensor], tuple[Tensor, Tensor]]


def chain_log(
    x: Tensor, linears: Sequence[Linear], activations: Sequence[nn.Module], dim: int
) -> tuple[Tensor, Tensor]:
    r"""``f(x)`` of one block flow without its residual and ``log df_i/dx_i`` (batch, dim):
    the diagonal Jacobian blocks chained in the log domain (Eq. 10-11, Appendix D)."""
    h, log_g = linears[0](x)
    log_g = log_g.squeeze(-1).unsqueeze(0)  # (1, d, a): the same for every sample
    for act, linear in zip(activations, linears[1:]):
        h, log_act = act(h)
        log_g = log_g + log_act.view(h.shape[0], dim, h.shape[1] // dim)
        h, log_w = linear(h)
        log_g = log_matvec(log_w, log_g)
    return h, log_g.squeeze(-1)


def chain_scaled(
    x: Tensor,
    linears: Sequence[Linear],
    activations: Sequence[nn.Module],
    dim: int,
    defer: bool = False,
) -> tuple[Tensor, Tensor] | None:
    r"""The same chain as :func:`chain_log` with each block written as ``g * exp(shift)``:
    ``shift`` (d, p) holds the weights' log-scale (batch-free), ``g`` (batch, d, p) the rest in
    the linear domain. Weights are rescaled by their row maximum before each product, and the
    activations' derivatives are at most 1, so ``g`` never overflows; the log is taken once,
    at the end. Returns ``None`` when some ``g`` came near underflow (saturated units), and
    the caller then uses the exact log-domain chain; with ``defer`` nothing is read on the
    host and those entries are NaN instead (a traced graph's caller recomputes them)."""
    n, d = x.shape[0], dim
    h, log_w = linears[0](x)
    shift = log_w.squeeze(-1)  # (d, a), differentiable: carries the first layer
    g: Tensor | None = None  # (n, d, q); None stands for all ones
    for act, linear in zip(activations, linears[1:]):
        h, d_act = act.with_derivative(h)  # type: ignore[operator]
        d_act = d_act.view(n, d, h.shape[1] // d)
        g = d_act if g is None else g * d_act
        h, log_w = linear(h)
        log_b = log_w + shift.unsqueeze(1)  # (d, p, q)
        shift = log_b.detach().amax(-1)  # a constant: g carries every dependence
        e = torch.exp(log_b - shift.unsqueeze(-1))  # (d, p, q), row maxima 1
        if e.shape[1] == 1:  # the last layer: a multiply and sum beats d tiny bmm calls
            g = (g * e.squeeze(1)).sum(-1, keepdim=True)
        else:
            g = torch.bmm(g.transpose(0, 1), e.transpose(1, 2)).transpose(0, 1)
    # a margin of 1/sqrt(tiny) over underflow bounds the error of flushed terms
    g = g.squeeze(-1)
    ok = g > torch.finfo(g.dtype).tiny ** 0.5
    if defer:
        return h, torch.where(ok, torch.log(g), torch.nan) + shift.squeeze(-1)
    if not bool(ok.all()):
        return None
    return h, torch.log(g) + shift.squeeze(-1)


def chain(
    x: Tensor, linears: Sequence[Linear], activations: Sequence[nn.Module], dim: int
) -> tuple[Tensor, Tensor]:
    r"""``f(x)`` without the residual, and ``log df_i/dx_i``, shape ``(batch, dim)``: by the
    scaled chain where its fallback is read on the host (free on the CPU), else by the log
    chain, decided per entry on the device (:func:`bnaf.flows.logjac.fallback_decision`);
    where the decision is deferred, by the scaled chain with NaN where it would fall back."""
    scaled = all(hasattr(act, "with_derivative") for act in activations)
    if scaled and logjac.deferred():  # for a traced graph: NaN marks what to recompute
        return chain_scaled(x, linears, activations, dim, defer=True)  # type: ignore[return-value]
    if scaled and logjac.decide_on_host(x):
        out = chain_scaled(x, linears, activations, dim)
        if out is not None:
            return out
    return chain_log(x, linears, activations, dim)
