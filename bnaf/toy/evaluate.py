r"""Evaluation of the toy models (Sections 5.1-5.2): densities on a grid, KL, mass coverage.

The energy-matching models are samplers ``x = f(y)``, ``y ~ N(0, I)``; drawing ``q`` on a grid
needs ``f^{-1}``, which :mod:`bnaf.flows.inverse` computes dimension by dimension (each ``x_i`` is
increasing in ``y_i`` given ``y_<i``, Section 3). Points outside the range of ``f`` (bounded:
the flow ends in an affine map of ``tanh`` units) get ``log q = -inf``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.core.stats import standard_normal_log_prob
from bnaf.flows import BNAF
from bnaf.flows.inverse import invert

__all__ = ["batched", "bnaf_sampler_log_prob_grid", "coverage"]


@torch.no_grad()
def batched(fn, x: Tensor, size: int = 65536) -> Tensor:
    r"""``fn`` applied to ``x`` in chunks of ``size`` rows, concatenated."""
    return torch.cat([fn(chunk) for chunk in x.split(size)])


@torch.no_grad()
def bnaf_sampler_log_prob_grid(model: BNAF, centres: np.ndarray) -> np.ndarray:
    r"""``log q`` of the sampler ``x = model(y)``, ``y ~ N(0, I)``, at the grid
    ``centres x centres``; ``[i, j]`` is at ``(centres[i], centres[j])``.

    ``y = f^{-1}(x)`` comes from the general inverse (:func:`bnaf.flows.inverse.invert`), then
    ``log q(x) = log N(y) - log|det J_f(y)|`` is evaluated exactly at that ``y``; points
    outside the (bounded) range of ``f`` get ``-inf``.
    """
    if model.dim != 2:
        raise BnafError("the grid density of a B-NAF sampler needs dim=2")
    dtype = next(model.parameters()).dtype
    c = torch.as_tensor(centres, dtype=dtype)
    x = torch.cartesian_prod(c, c)
    result = invert(model, x)
    y = torch.where(result.inside[:, None], result.x, torch.zeros_like(result.x))
    log_det = batched(lambda v: model(v)[1], y)
    log_q = standard_normal_log_prob(y) - log_det
    log_q = torch.where(result.inside, log_q, torch.full_like(log_q, -math.inf))
    return log_q.reshape(len(c), len(c)).numpy().copy()


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
