r"""Sampling a B-NAF stack through its inverse, and the range of the stack (beyond the paper).

A base draw ``z ~ N(0, I)`` inside the range of the flow ``f`` has the preimage
``x = f^{-1}(z)`` (:func:`bnaf.flows.inverse.invert`), which is a sample of the density
``p(x) = N(f(x)) |det J_f(x)|`` (Eq. 1) normalised over the range: ``p`` integrates to the base
mass ``Z`` of the range, which is below 1 when the last flow has no residual (the authors'
setting). Draws outside the range are rejected, and their fraction estimates ``1 - Z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.flows.inverse import invert, is_onto
from bnaf.flows.layers import BlockFlow, Stack

__all__ = ["Samples", "in_range", "sample"]


@dataclass
class Samples:
    r"""What :func:`sample` returns: ``x`` (n, d) drawn from ``p(x) / Z`` with ``Z`` the base
    mass of the range, estimated by ``accepted`` (the fraction of the ``drawn`` base samples
    that fell inside the range)."""

    x: Tensor
    accepted: float
    drawn: int


def _first_bounded(model: Stack) -> int | None:
    """Index in ``model.transforms`` of the earliest flow that is not onto (None if none)."""
    for k, t in enumerate(model.transforms):
        if isinstance(t, BlockFlow) and not is_onto(t):
            return k
    return None


@torch.no_grad()
def in_range(model: Stack, z: Tensor, xtol: float | None = None) -> Tensor:
    r"""``(n,)`` bool: ``z`` lies in the range of the stack. Only the flows from the earliest
    bounded one onwards are inverted (flows before it map onto ``R^d``)."""
    first = _first_bounded(model)
    if first is None:
        return torch.isfinite(z).all(-1).to(next(model.parameters()).device)
    return invert(model, z, xtol=xtol, stop=first).inside


@torch.no_grad()
def sample(
    model: Stack,
    n: int,
    generator: torch.Generator | None = None,
    batch_size: int = 10_000,
    max_draws: int | None = None,
    xtol: float | None = None,
) -> Samples:
    r"""Draw ``n`` samples of the (normalised) model density by inverting base samples.

    Base draws ``z ~ N(0, I)`` outside the range are rejected, so the samples follow
    ``p(x) / Z``; ``Z`` (the integral of ``p``) is estimated by the accepted fraction.
    Gives up with :class:`~bnaf.core.errors.BnafError` after ``max_draws`` (default ``100 n``).
    """
    param = next(model.parameters())
    max_draws = 100 * max(n, 1) if max_draws is None else max_draws
    kept: list[Tensor] = []
    have = drawn = 0
    onto = _first_bounded(model) is None
    while have < n:
        if drawn >= max_draws:
            raise BnafError(
                f"only {have} of {n} samples after {drawn} base draws: the flow's range holds "
                f"too little base mass ({have / max(drawn, 1):.2g})"
            )
        # Size the next draw by the acceptance rate so far (exactly 1 for an onto flow).
        rate = max(have / drawn, 0.01) if drawn else 1.0
        want = n - have if onto else math.ceil(1.1 * (n - have) / rate) + 16
        m = min(batch_size, max_draws - drawn, want)
        z = torch.randn(m, model.dim, generator=generator, dtype=param.dtype, device="cpu")
        res = invert(model, z.to(param.device), xtol=xtol)
        kept.append(res.x[res.inside])
        have += int(res.inside.sum())
        drawn += m
    return Samples(torch.cat(kept)[:n], have / drawn, drawn)
