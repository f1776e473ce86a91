r"""Evaluation of the toy models (Sections 5.1-5.2): densities on a grid, KL, mass coverage.

The energy-matching models are samplers ``x = f(y)``, ``y ~ N(0, I)``; drawing ``q`` on a grid
needs ``f^{-1}``. For a one-flow 2-D B-NAF (the paper's setting) ``x1 = f1(y1)`` and
``x2 = f2(y1, y2)`` are increasing in their last argument (Section 3), so we find ``y1`` by
bisection per grid column and ``y2`` by monotone interpolation of ``f2(y1, .)`` on a fine
``y2`` grid, then evaluate ``log q = log N(y) - log|det J_f(y)|`` exactly at that ``y``.
Points outside the range of ``f`` (bounded: the flow ends in an affine map of ``tanh`` units)
get ``log q = -inf``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from bnaf.errors import BnafError
from bnaf.flow import BNAF

__all__ = ["batched", "bnaf_sampler_log_prob_grid", "coverage", "mean_se"]

_LOG_2PI = math.log(2 * math.pi)


def mean_se(values: np.ndarray) -> tuple[float, float]:
    r"""Per-sample mean and its standard error ``std / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


@torch.no_grad()
def batched(fn, x: Tensor, size: int = 65536) -> Tensor:
    r"""``fn`` applied to ``x`` in chunks of ``size`` rows, concatenated."""
    return torch.cat([fn(chunk) for chunk in x.split(size)])


@torch.no_grad()
def bnaf_sampler_log_prob_grid(
    model: BNAF, centres: np.ndarray, y_limit: float = 8.0, y_points: int = 2001
) -> np.ndarray:
    r"""``log q`` of the sampler ``x = model(y)`` at the grid ``centres x centres``, ``[i, j]``
    = at ``(centres[i], centres[j])``. Needs ``dim == 2`` and ``flows == 1``."""
    if model.dim != 2 or len(model.transforms) != 1:
        raise BnafError("the grid density of a B-NAF sampler needs dim=2 and flows=1")
    dtype = next(model.parameters()).dtype
    c = torch.as_tensor(centres, dtype=dtype)
    n = len(c)

    def f(y: Tensor) -> Tensor:
        return batched(lambda t: model(t)[0], y)

    # y1 per column: bisection on x1 = f1(y1) (independent of y2).
    lo, hi = torch.full((n,), -y_limit, dtype=dtype), torch.full((n,), y_limit, dtype=dtype)
    x1_lo = f(torch.stack([lo, torch.zeros_like(lo)], 1))[:, 0]
    x1_hi = f(torch.stack([hi, torch.zeros_like(hi)], 1))[:, 0]
    col_ok = (c > x1_lo) & (c < x1_hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = f(torch.stack([mid, torch.zeros_like(mid)], 1))[:, 0] > c
        hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
    y1 = 0.5 * (lo + hi)
    # y2 per point: x2 = f2(y1, t) on a fine t grid, inverted by interpolation.
    t = torch.linspace(-y_limit, y_limit, y_points, dtype=dtype)
    pts = torch.stack([y1[:, None].expand(n, y_points), t[None].expand(n, y_points)], -1)
    x2 = f(pts.reshape(-1, 2))[:, 1].reshape(n, y_points).numpy()
    y2 = np.empty((n, n))
    inside = np.zeros((n, n), dtype=bool)
    for i in range(n):
        # f2 is increasing in y2; np.maximum.accumulate guards against round-off ties.
        xs = np.maximum.accumulate(x2[i])
        y2[i] = np.interp(centres, xs, t.numpy())
        inside[i] = col_ok[i].item() & (centres > xs[0]) & (centres < xs[-1])
    y = torch.stack([y1[:, None].expand(n, n), torch.as_tensor(y2, dtype=dtype)], -1)
    y = y.reshape(-1, 2)
    log_det = batched(lambda v: model(v)[1], y)
    log_q = -0.5 * (y.square().sum(-1) + 2 * _LOG_2PI) - log_det
    out = log_q.reshape(n, n).numpy().copy()
    out[~inside] = -np.inf
    return out


def coverage(log_p: np.ndarray, log_q: np.ndarray, level: float = 0.99) -> float:
    r"""Target mass inside the model's ``level`` highest-density region.

    On a grid of equal cells: sort the cells by ``q``, keep the fewest whose ``q``-mass reaches
    ``level`` of ``q``'s mass on the grid (the model's HDR), and return the fraction of the
    target's grid mass that lies in those cells. A model equal to the target gives ``level``;
    a model that misses a mode of mass ``m`` gives about ``level - m``.
    """
    q = np.exp(log_q.ravel() - np.max(log_q))
    p = np.exp(log_p.ravel() - np.max(log_p))
    order = np.argsort(-q, kind="stable")
    cum = np.cumsum(q[order])
    keep = order[: int(np.searchsorted(cum, level * cum[-1])) + 1]
    return float(p[keep].sum() / p.sum())
