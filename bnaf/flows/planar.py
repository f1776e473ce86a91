r"""Planar flows (Rezende and Mohamed, 2015): the baseline of Figure 3.

``f(z) = z + u_hat tanh(w^T z + b)`` with ``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` and
``m(a) = -1 + softplus(a)``, which keeps ``w^T u_hat >= -1`` so every layer is invertible
(Rezende and Mohamed, 2015, Appendix A.1). ``log|det df/dz| = log|1 + u_hat^T psi(z)|`` with
``psi(z) = tanh'(w^T z + b) w`` (Eq. 11-12 there).

Samples run ``z_0 ~ N(0, I) -> z_K``; :meth:`PlanarFlow.log_prob` inverts each layer exactly
(``w^T z`` solves a scalar monotone equation, found by bisection) so the density can be drawn
on a grid.

References:
    | Variational Inference with Normalizing Flows (Rezende and Mohamed, 2015)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.io import load_module, save_module
from bnaf.core.stats import standard_normal_log_prob

__all__ = ["PlanarFlow", "load_planar", "save_planar"]


class PlanarFlow(nn.Module):
    r"""``K`` planar layers on ``R^dim`` pushing forward a standard normal.

    Arguments:
        dim: dimension.
        flows: ``K``, the number of planar layers (Figure 3 of the paper: 32).
        init_std: standard deviation of the normal initialisation of ``u`` and ``w``.

    Example:
        >>> flow = PlanarFlow(2, flows=4)
        >>> x, log_q = flow.sample(5)
        >>> torch.allclose(flow.log_prob(x.double()), log_q.double(), atol=1e-4)
        True
    """

    def __init__(self, dim: int = 2, flows: int = 32, init_std: float = 0.1):
        super().__init__()
        self.config = dict(dim=dim, flows=flows, init_std=init_std)
        self.dim = dim
        self.u = nn.Parameter(torch.randn(flows, dim) * init_std)
        self.w = nn.Parameter(torch.randn(flows, dim) * init_std)
        self.b = nn.Parameter(torch.zeros(flows))

    def _u_hat(self) -> Tensor:
        wu = (self.w * self.u).sum(-1, keepdim=True)
        m = -1.0 + F.softplus(wu)
        return self.u + (m - wu) * self.w / self.w.square().sum(-1, keepdim=True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""``z_K`` and ``sum_k log|det df_k/dz_{k-1}|``."""
        u_hat = self._u_hat()
        log_det = z.new_zeros(z.shape[0])
        for k in range(self.u.shape[0]):
            h = torch.tanh(z @ self.w[k] + self.b[k])
            psi_u = (1 - h.square()) * (self.w[k] @ u_hat[k])
            log_det = log_det + torch.log((1 + psi_u).abs() + 1e-12)
            z = z + h[:, None] * u_hat[k]
        return z, log_det

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        r"""``n`` samples ``x`` and ``log q(x) = log N(z_0) - sum log|det|``."""
        z0 = torch.randn(n, self.dim, device=self.u.device, dtype=self.u.dtype)
        x, log_det = self(z0)
        return x, standard_normal_log_prob(z0) - log_det

    @torch.no_grad()
    def inverse(self, x: Tensor, iterations: int = 60) -> Tensor:
        r"""``z_0`` with ``f(z_0) = x``: layer by layer, ``a = w^T z`` solves
        ``w^T y = a + (w^T u_hat) tanh(a + b)``, increasing in ``a`` and within
        ``|w^T u_hat|`` of ``w^T y``."""
        u_hat = self._u_hat()
        z = x
        for k in reversed(range(self.u.shape[0])):
            wy, wu = z @ self.w[k], self.w[k] @ u_hat[k]
            lo, hi = wy - wu.abs() - 1e-6, wy + wu.abs() + 1e-6
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                above = mid + wu * torch.tanh(mid + self.b[k]) > wy
                hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
            z = z - torch.tanh(0.5 * (lo + hi) + self.b[k])[:, None] * u_hat[k]
        return z

    @torch.no_grad()
    def log_prob(self, x: Tensor) -> Tensor:
        r"""``log q(x)`` by exact inversion (change of variables, Eq. 2 of the paper)."""
        z0 = self.inverse(x)
        _, log_det = self(z0)
        return standard_normal_log_prob(z0) - log_det


def save_planar(model: PlanarFlow, path: str | Path, **extra: object) -> None:
    save_module(model, path, **extra)


def load_planar(path: str | Path) -> PlanarFlow:
    return load_module(PlanarFlow, path)[0]
