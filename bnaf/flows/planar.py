r"""Planar flows (Rezende and Mohamed, 2015): the baseline of Figure 3.

``f(z) = z + u_hat tanh(w^T z + b)`` with ``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` and
``m(a) = -1 + softplus(a)``, which keeps ``w^T u_hat >= -1`` so every layer is invertible
(Rezende and Mohamed, 2015, Appendix A.1). ``log|det df/dz| = log|1 + u_hat^T psi(z)|`` with
``psi(z) = tanh'(w^T z + b) w`` (Eq. 11-12 there).

Samples run ``z_0 ~ N(0, I) -> z_K``; :meth:`PlanarFlow.log_prob` inverts each layer exactly
(``w^T z`` solves a scalar monotone equation, found by bisection) so the density can be drawn
on a grid.

Training runs ``K = 32`` layers on batches of 200 two-dimensional points for 500k steps
(Section 5.2), so the cost of a step is the number of tiny kernels, not arithmetic.
:meth:`PlanarFlow.forward` therefore runs :class:`PlanarStack`, one autograd node with a
hand-written backward: three fused kernels per layer each way (``addmv``, ``tanh``, ``addr``)
and every per-layer quantity that does not feed the next layer (log-determinants, parameter
gradients) computed for all ``K`` layers at once. :meth:`PlanarFlow.forward_reference` is the
plain layer-by-layer autograd version it is tested against.

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

__all__ = ["PlanarFlow", "PlanarStack", "load_planar", "save_planar"]

#: added inside the log of each layer's ``|1 + u_hat^T psi|`` (which can reach 0 when
#: ``w^T u_hat = -1``), as in the reference forward
EPS = 1e-12


class PlanarStack(torch.autograd.Function):
    r"""``K`` planar layers ``z <- z + u_k tanh(w_k^T z + b_k)`` and the summed
    ``log(|1 + (1 - h_k^2) w_k^T u_k| + EPS)``, with a hand-written backward.

    Inputs ``z`` (batch, d), ``w`` and ``u`` (K, d) (``u`` is ``u_hat``), ``b`` (K). Writing
    ``a_k = w_k^T z_k + b_k``, ``h_k = tanh a_k``, ``s_k = 1 - h_k^2``, ``c_k = w_k^T u_k`` and
    ``D_k = 1 + s_k c_k``, the backward pass runs the chain rule through ``z_{k+1} = z_k + h_k
    u_k`` from the last layer to the first:

    ``dL/dh_k = g_{k+1}^T u_k - 2 h_k c_k g_L / D_k``, ``dL/da_k = s_k dL/dh_k`` and
    ``g_k = g_{k+1} + (dL/da_k) w_k``, with ``g_L`` the gradient of the summed log-determinant
    (``1 / D_k`` stands for ``sign(D_k) / (|D_k| + EPS)``). Parameter gradients are sums over
    the batch, formed for all layers at once from the stored ``z_k``, ``h_k`` and ``g_{k+1}``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, w: Tensor, u: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        zs, hs = [], []
        for w_k, u_k, b_k in zip(w.unbind(0), u.unbind(0), b.unbind(0)):
            zs.append(z)
            h = torch.addmv(b_k, z, w_k).tanh_()
            hs.append(h)
            z = torch.addr(z, h, u_k)
        h = torch.stack(hs)  # (K, batch)
        c = (w * u).sum(-1)  # (K,)
        s = 1.0 - h.square()
        d = torch.addcmul(torch.ones_like(s), s, c[:, None])
        log_det = torch.log(d.abs() + EPS).sum(0)
        ctx.save_for_backward(torch.stack(zs), h, s, d, c, w, u)
        return z, log_det

    @staticmethod
    def backward(ctx, g_z: Tensor | None, g_log_det: Tensor | None):
        zs, h, s, d, c, w, u = ctx.saved_tensors
        if g_z is None:
            g_z = torch.zeros_like(zs[0])
        if g_log_det is None:
            g_log_det = torch.zeros_like(h[0])
        inv_d = torch.sign(d) / (d.abs() + EPS)  # d log(|D| + EPS) / dD
        dlog_ds = g_log_det * inv_d  # (K, batch): dL/ds_k = g_L / D_k * c_k, c_k applied below
        from_log = -2.0 * h * dlog_ds * c[:, None]  # log-determinant's part of dL/dh_k
        gs, gas = [], []
        g = g_z
        layers = zip(from_log.unbind(0), s.unbind(0), w.unbind(0), u.unbind(0))
        for from_log_k, s_k, w_k, u_k in reversed(list(layers)):
            gs.append(g)  # dL/dz_{k+1}
            ga = torch.addmv(from_log_k, g, u_k).mul_(s_k)
            gas.append(ga)
            g = torch.addr(g, ga, w_k)
        g_next = torch.stack(gs[::-1])  # (K, batch, d): dL/dz_{k+1}
        ga = torch.stack(gas[::-1])  # (K, batch): dL/da_k
        g_c = (dlog_ds * s).sum(1)  # (K,)
        g_w = torch.einsum("kb,kbd->kd", ga, zs) + g_c[:, None] * u
        g_u = torch.einsum("kb,kbd->kd", h, g_next) + g_c[:, None] * w
        return g, g_w, g_u, ga.sum(1)


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
        r"""``z_K`` and ``sum_k log|det df_k/dz_{k-1}|`` (:class:`PlanarStack`)."""
        return PlanarStack.apply(z, self.w, self._u_hat(), self.b)

    def forward_reference(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`forward` layer by layer with autograd: the reference of the fast path."""
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
