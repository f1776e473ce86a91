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

Training (Appendix B) differentiates ``U`` half a million times a run for the planar flows of
Figure 3, so :func:`confined_energies` computes every member's ``U`` with its gradient in
closed form (one autograd node, :class:`ConfinedEnergies`) rather than recording the few dozen
small operations above for autograd; ``tests/test_toy_data.py`` checks it against autograd of
:func:`confined_energy` in float64.

``exp(-U2..4)`` does not depend on ``z1`` far from the origin, so it is not integrable on the
plane. The authors' ``toy2d.py`` trains against ``U(z) + sum_i relu(|z_i| - 6)^2``; we do the
same (:func:`confined_energy`, ``bound=6``) and compute ``log Z`` of that target on a grid
(:func:`log_normaliser`).

References:
    | Variational Inference with Normalizing Flows (Rezende and Mohamed, 2015), Table 1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from bnaf.core.errors import BnafError

__all__ = [
    "ENERGIES",
    "ConfinedEnergies",
    "confined_energies",
    "confined_energy",
    "confinement",
    "energy",
    "energy_and_gradient",
    "grid",
    "log_normaliser",
]


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
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


def _u4(z: Tensor) -> Tensor:
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


#: energy name -> ``U(z)`` for ``z`` of shape ``(n, 2)``.
ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


# Closed-form gradients: each returns ``(U(z), dU/dz)``, the value by the very operations of
# the function above (so the training loss is the same number), the gradient by hand. For a
# log of a sum of two Gaussian bumps, ``-logaddexp(a, b)``, the gradient is ``-(p da + (1 - p)
# db)`` with ``p = sigmoid(a - b)``, the first bump's share.


def _dw1(z1: Tensor) -> Tensor:
    return (math.pi / 2) * torch.cos(2 * math.pi * z1 / 4)


def _u1_grad(z: Tensor) -> tuple[Tensor, Tensor]:
    z1 = z[:, 0]
    r = torch.linalg.vector_norm(z, dim=1)
    q = (r - 2) / 0.4
    ea, eb = (z1 - 2) / 0.6, (z1 + 2) / 0.6
    a, b = -0.5 * ea**2, -0.5 * eb**2
    u = 0.5 * q**2 - torch.logaddexp(a, b)
    p = torch.sigmoid(a - b)
    # d ring / dz = (q / 0.4) z / ||z||, taken as 0 at the origin (as autograd's norm does)
    radial = torch.where(r > 0, q / 0.4 / r, torch.zeros_like(r))
    g = radial[:, None] * z
    g[:, 0] += (p * ea + (1 - p) * eb) / 0.6
    return u, g


def _u2_grad(z: Tensor) -> tuple[Tensor, Tensor]:
    z1 = z[:, 0]
    e = (z[:, 1] - _w1(z)) / 0.4
    u = 0.5 * e**2
    d2 = e / 0.4  # dU/dz2; dU/dz1 = -dU/dz2 w1'
    return u, torch.stack([-d2 * _dw1(z1), d2], -1)


def _two_bumps(z: Tensor, shift: Tensor, d_shift: Tensor, sa: float, sb: float):  # noqa: ANN202
    r"""``-logaddexp(-1/2 ((z2 - w1) / sa)^2, -1/2 ((z2 - w1 + shift) / sb)^2)`` (U3, U4) and
    its gradient, with ``d_shift = d shift / d z1``."""
    z1, z2 = z[:, 0], z[:, 1]
    w1, dw1 = _w1(z), _dw1(z1)
    ea, eb = (z2 - w1) / sa, (z2 - w1 + shift) / sb
    a, b = -0.5 * ea**2, -0.5 * eb**2
    u = -torch.logaddexp(a, b)
    p = torch.sigmoid(a - b)
    # dU/dz2 = p ea / sa + (1 - p) eb / sb; z1 moves both centres (-w1' and -w1' + shift')
    ga, gb = p * ea / sa, (1 - p) * eb / sb
    return u, torch.stack([-(ga + gb) * dw1 + gb * d_shift, ga + gb], -1)


def _u3_grad(z: Tensor) -> tuple[Tensor, Tensor]:
    w2 = _w2(z)
    return _two_bumps(z, w2, -w2 * (z[:, 0] - 1) / 0.36, 0.35, 0.35)


def _u4_grad(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid((z[:, 0] - 1) / 0.3)
    return _two_bumps(z, 3 * s, 3 * s * (1 - s) / 0.3, 0.4, 0.35)


_GRADIENTS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "U1": _u1_grad, "U2": _u2_grad, "U3": _u3_grad, "U4": _u4_grad
}  # fmt: skip


def energy_and_gradient(name: str, z: Tensor) -> tuple[Tensor, Tensor]:
    r"""``U(z)`` (n,) and ``dU/dz`` (n, 2) in closed form, without autograd."""
    if name not in _GRADIENTS:
        raise BnafError(f"unknown energy {name!r}; expected one of {', '.join(ENERGIES)}")
    return _GRADIENTS[name](z)


class ConfinedEnergies(torch.autograd.Function):
    r"""``U_m(x[m]) + sum_i relu(|x[m]_i| - bound)^2`` for ``x`` (M, n, 2) and one energy name
    per member, with the gradient formed in the forward pass (closed form): one autograd node
    in place of a few dozen, which is most of a planar training step's cost otherwise."""

    @staticmethod
    def forward(ctx, x: Tensor, names: tuple[str, ...], bound: float | None) -> Tensor:  # type: ignore[override]
        us, gs = zip(*(energy_and_gradient(n, x_m) for n, x_m in zip(names, x)))
        u, g = torch.stack(us), torch.stack(gs)
        if bound is not None:
            excess = torch.relu(x.abs() - bound)
            u = u + excess.square().sum(-1)  # confinement(x, bound), the same operations
            g = g.addcmul_(excess, torch.sign(x), value=2.0)
        ctx.save_for_backward(g)
        return u

    @staticmethod
    def backward(ctx, g_u: Tensor):  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return g_u[..., None] * g, None, None


def confined_energies(x: Tensor, names: Sequence[str], bound: float | None = 6.0) -> Tensor:
    r"""``confined_energy(names[m], x[m], bound)`` for every member ``m`` of ``x`` (M, n, 2),
    differentiable through :class:`ConfinedEnergies`."""
    if len(names) != x.shape[0]:
        raise BnafError(f"{len(names)} energy names for {x.shape[0]} members")
    return ConfinedEnergies.apply(x, tuple(names), bound)


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
