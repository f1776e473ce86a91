r"""The four 2-D energy functions of Rezende and Mohamed (2015, Table 1) (Section 5.2, Figure 3).

``p(z) = exp(-U(z)) / Z`` with

* ``U1(z) = 1/2 ((||z|| - 2) / 0.4)^2 - log(exp(-1/2 ((z1 - 2) / 0.6)^2)
  + exp(-1/2 ((z1 + 2) / 0.6)^2))``
* ``U2(z) = 1/2 ((z2 - w1(z)) / 0.4)^2``
* ``U3(z) = -log(exp(-1/2 ((z2 - w1) / 0.35)^2) + exp(-1/2 ((z2 - w1 + w2) / 0.35)^2))``
* ``U4(z) = -log(exp(-1/2 ((z2 - w1) / 0.4)^2) + exp(-1/2 ((z2 - w1 + w3) / 0.35)^2))``

with ``w1 = sin(2 pi z1 / 4)``, ``w2 = 3 exp(-1/2 ((z1 - 1) / 0.6)^2)``,
``w3 = 3 sigmoid((z1 - 1) / 0.3)``. The logs of sums are evaluated with ``logaddexp`` (the
authors' code adds ``1e-9`` inside the log instead, which changes nothing where the mass is).

``exp(-U2..4)`` does not depend on ``z1`` far from the origin, so it is not integrable on the
plane. The authors' ``toy2d.py`` trains against ``U(z) + sum_i relu(|z_i| - 6)^2``; we do the
same (:func:`confined_energy`, ``bound=6``) and compute ``log Z`` of that target on a grid
(:func:`log_normaliser`).

References:
    | Variational Inference with Normalizing Flows (Rezende and Mohamed, 2015), Table 1
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from bnaf.core.errors import BnafError

__all__ = ["ENERGIES", "confined_energy", "confinement", "energy", "grid", "log_normaliser"]


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _u1(z: Tensor) -> Tensor:
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=1) - 2) / 0.4) ** 2
    lobes = torch.logaddexp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)
    return ring - lobes


def _u2(z: Tensor) -> Tensor:
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def _u3(z: Tensor) -> Tensor:
    # z2 - w1 is written twice on purpose: sharing it would change the order in which
    # autograd sums the gradient, and the trained models (the committed numbers) by rounding
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


def _u4(z: Tensor) -> Tensor:
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


#: energy name -> ``U(z)`` for ``z`` of shape ``(n, 2)``.
ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def energy(name: str, z: Tensor) -> Tensor:
    r"""``U(z)`` of Rezende and Mohamed (2015, Table 1), shape ``(n,)``."""
    if name not in ENERGIES:
        raise BnafError(f"unknown energy {name!r}; expected one of {', '.join(ENERGIES)}")
    return ENERGIES[name](z)


def confined_energy(name: str, z: Tensor, bound: float | None = 6.0) -> Tensor:
    r"""``U(z) + sum_i relu(|z_i| - bound)^2``: the authors' target, a proper density for
    every ``U`` (``bound=None`` gives ``U`` alone)."""
    u = energy(name, z)
    if bound is None:
        return u
    return u + confinement(z, bound)


def confinement(z: Tensor, bound: float) -> Tensor:
    r"""``sum_i relu(|z_i| - bound)^2`` over the last dimension (any leading shape)."""
    return torch.relu(z.abs() - bound).square().sum(-1)


def grid(limit: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Cell centres of a square grid on ``[-limit, limit]^2``: the 1-D centres ``c`` and the
    points ``(n*n, 2)`` in ``ij`` order (``points[i * n + j] = (c[i], c[j])``)."""
    n = int(round(2 * limit / step))
    c = -limit + step * (np.arange(n) + 0.5)
    pts = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    return c, pts


def log_normaliser(
    name: str, bound: float | None = 6.0, limit: float | None = None, step: float = 0.02
) -> float:
    r"""``log Z = log int exp(-U(z) - penalty) dz`` by the midpoint rule on a grid.

    The default box is ``[-(bound + 6), bound + 6]^2`` (beyond it the confinement adds more than
    36 nats), or ``[-6, 6]^2`` for ``U1`` without confinement.
    """
    if limit is None:
        if bound is None and name != "U1":
            raise BnafError(f"exp(-{name}) is not integrable on the plane; give a bound")
        limit = (bound if bound is not None else 0.0) + 6.0
    c, _ = grid(limit, step)
    total = []
    with torch.no_grad():
        for rows in np.array_split(c, max(1, len(c) // 100)):
            pts = np.stack(np.meshgrid(rows, c, indexing="ij"), -1).reshape(-1, 2)
            u = confined_energy(name, torch.from_numpy(pts), bound)
            total.append(torch.logsumexp(-u, 0))
    return float(torch.logsumexp(torch.stack(total), 0)) + 2 * math.log(step)
